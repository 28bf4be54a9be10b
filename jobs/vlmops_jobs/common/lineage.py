"""Manifests with lineage: what was read (with digests), the resolved parameters, the code version.

A manifest is the commit point of a job's output: it is written last, and a reader (the next
job, the operator, the local runner) treats an output as present only when its manifest is.
Manifests hold no timestamps so that two runs on the same inputs are byte-identical.
"""
from __future__ import annotations

from typing import Any

from vlmops_contract.layouts import MANIFEST

from . import storage



def code_version() -> str:
    try:
        from importlib.metadata import version

        return version("vlmops")
    except Exception:
        return "0+unknown"


def build_manifest(
    *,
    kind: str,
    step: str,
    inputs: dict[str, Any],
    parameters: dict[str, Any],
    files: dict[str, str],
    stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`files` maps output-relative paths to their sha256 digests; `inputs` maps names to
    {"uri", "digest"} (or lists of them)."""
    return {
        "apiVersion": "vlmops.dev/v1alpha1",
        "kind": f"{kind}Manifest",
        "step": step,
        "codeVersion": code_version(),
        "inputs": inputs,
        "parameters": parameters,
        "files": dict(sorted(files.items())),
        "stats": stats or {},
    }


def commit_manifest(output_uri: str, manifest: dict[str, Any], name: str = MANIFEST) -> dict[str, str]:
    """Write the manifest last; returns the `status.output` block (uri, manifest, digest)."""
    uri = storage.join(output_uri, name)
    digest = storage.write_json_atomic(uri, manifest)
    return {"uri": output_uri.rstrip("/"), "manifest": uri, "digest": digest}


def read_manifest(output_uri: str, name: str = MANIFEST) -> dict[str, Any] | None:
    uri = storage.join(output_uri, name)
    if not storage.exists(uri):
        return None
    return storage.read_json(uri)
