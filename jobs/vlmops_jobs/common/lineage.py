"""Manifests with lineage: what was read (by content digest), the resolved parameters, the code and
environment that ran, and an identity digest that is equal for equal content wherever it is stored.

A manifest is the commit point of a job's output: it is written last, and a reader (the next
job, the operator, the local runner) treats an output as present only when its manifest is.
Manifests hold no timestamps so that two runs on the same inputs are byte-identical.

Identity (`identity`, "sha256:..."; the rule is `vlmops_contract.identity`): the manifest without
locations and derived fields, digested. Moving a workdir or a storage prefix keeps every identity;
any change of content, parameters, code or environment changes it and everything downstream.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from vlmops_contract.identity import identity_of, identity_view, skipped, tree_digest as _tree_of
from vlmops_contract.layouts import MANIFEST

from . import storage



@functools.lru_cache(maxsize=1)
def code_identity() -> dict[str, Any]:
    """{"version", "tree", "commit"}: the package version, a digest of the job sources (every file of
    vlmops_jobs and vlmops_contract, by relative path) and, when known, the git commit (from the
    image's VLMOPS_GIT_COMMIT, or a checkout's HEAD; informational, outside identity)."""
    import vlmops_contract
    import vlmops_jobs

    h = hashlib.sha256()
    for pkg in (vlmops_jobs, vlmops_contract):
        root = Path(pkg.__file__).parent
        for p in sorted(x for x in root.rglob("*") if x.is_file() and "__pycache__" not in x.parts
                        and x.suffix not in (".pyc", ".pyo")):
            h.update(f"{pkg.__name__}/{p.relative_to(root).as_posix()}\0".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    ver = "0+source"  # running from a source tree: the tree hash is the version
    if not (Path(vlmops_jobs.__file__).parents[1] / "vlmops_contract").exists() or \
            not (Path(vlmops_jobs.__file__).parents[2] / "pyproject.toml").exists():
        try:
            from importlib.metadata import version

            ver = version("vlmops")
        except Exception:
            pass
    out: dict[str, Any] = {"version": ver, "tree": "sha256:" + h.hexdigest()}
    commit = os.environ.get("VLMOPS_GIT_COMMIT") or _git_head(Path(vlmops_jobs.__file__).parents[2])
    if commit:
        out["commit"] = commit
    return out


def _git_head(repo: Path) -> str | None:
    head = repo / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            p = repo / ".git" / ref[5:]
            if p.exists():
                return p.read_text().strip()
            for line in (repo / ".git" / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref[5:]):
                    return line.split()[0]
            return None
        return ref
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """{"packages": digest of the installed distributions (name==version, sorted) — the Python
    environment's lock —, "image": the container image the pod was started with, when the operator
    says (VLMOPS_IMAGE; informational: the operator records the resolved digest)}."""
    import sysconfig
    from importlib.metadata import distributions

    # the interpreter's own site-packages, not sys.path: a process's extra path entries (a test's,
    # a plugin's) must not change what "this environment" means
    where = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    names = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in distributions(path=where)})
    out: dict[str, Any] = {"packages": "sha256:" + hashlib.sha256("\n".join(names).encode()).hexdigest()}
    if os.environ.get("VLMOPS_IMAGE"):
        out["image"] = os.environ["VLMOPS_IMAGE"]
    return out


def same_code_and_environment(manifest: dict[str, Any]) -> bool:
    """Whether a committed manifest was written by this code in this environment (informational
    fields such as the image the operator recorded do not count)."""
    view, here = identity_view(manifest), identity_view({"code": code_identity(), "environment": environment()})
    return (view["code"], view["environment"]) == (here["code"], here["environment"])


def build_manifest(
    *,
    kind: str,
    step: str,
    inputs: dict[str, Any],
    parameters: dict[str, Any],
    files: dict[str, str],
    stats: dict[str, Any] | None = None,
    locations: dict[str, Any] | None = None,
    raw_files: dict[str, str] | None = None,
    operational: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`files` maps output-relative paths to their sha256 digests (in the identity); `raw_files` the
    same for files kept beside them but outside identity (e.g. lmms-eval's own output, which holds
    dates and timings). `inputs` maps names to {"digest", "uri"} (or lists of them): the digest is
    the content's (an upstream artifact's identity), the uri only says where it was read.
    `parameters` must not name locations: those go in `locations`; settings that change nothing in
    the output (a metrics port, a log interval) go in `operational`."""
    manifest = {
        "apiVersion": "vlmops.dev/v1alpha1",
        "kind": f"{kind}Manifest",
        "step": step,
        "code": code_identity(),
        "environment": environment(),
        "inputs": inputs,
        "parameters": parameters,
        "files": dict(sorted(files.items())),
        "stats": stats or {},
        "locations": locations or {},
    }
    if raw_files:
        manifest["rawFiles"] = dict(sorted(raw_files.items()))
    if operational:
        manifest["operational"] = operational
    manifest["identity"] = identity_of(manifest)
    return manifest


def commit_manifest(output_uri: str, manifest: dict[str, Any], name: str = MANIFEST) -> dict[str, str]:
    """Write the manifest last; returns the `status.output` block (uri, manifest, digest, identity)."""
    uri = storage.join(output_uri, name)
    digest = storage.write_json_atomic(uri, manifest)
    out = {"uri": output_uri.rstrip("/"), "manifest": uri, "digest": digest}
    if manifest.get("identity"):
        out["identity"] = manifest["identity"]
    return out


def read_manifest(output_uri: str, name: str = MANIFEST) -> dict[str, Any] | None:
    uri = storage.join(output_uri, name)
    if not storage.exists(uri):
        return None
    return storage.read_json(uri)


def reusable_manifest(output_uri: str, parameters: dict[str, Any], inputs: dict[str, Any],
                      name: str = MANIFEST) -> dict[str, Any] | None:
    """The manifest of an earlier commit of this output that a rerun may keep: same parameters and
    inputs, written by this code in this environment, every file still matching its digest. None
    otherwise (the step runs again)."""
    try:
        m = read_manifest(output_uri, name)
    except (ValueError, OSError):
        return None
    if not m or not same_json(m.get("parameters"), parameters) or not same_json(m.get("inputs"), inputs) \
            or not same_code_and_environment(m):
        return None
    for rel, digest in (m.get("files") or {}).items():
        uri = storage.join(output_uri, rel)
        if not storage.exists(uri) or storage.sha256_uri(uri) != digest:
            return None
    return m


def committed_marker(marker_uri: str, parameters: dict[str, Any]) -> dict[str, Any] | None:
    """A shard's marker when it committed with these parameters and the files it names still verify
    (an unreadable marker is redone, not trusted)."""
    try:
        if not storage.exists(marker_uri):
            return None
        m = storage.read_json(marker_uri)
        if not same_json(m.get("parameters"), parameters):
            return None
        for f in m["files"].values():
            if not storage.exists(f["uri"]) or storage.sha256_uri(f["uri"]) != f["digest"]:
                return None
        return m
    except (ValueError, OSError, KeyError):
        return None


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON (tuples and lists alike, as they were written)."""
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def upstream(output_uri: str, name: str = MANIFEST) -> dict[str, Any]:
    """An input that is another job's committed output: {"digest": its identity, "uri", "manifest"}."""
    m = read_manifest(output_uri, name)
    ref = {"uri": output_uri.rstrip("/"), "manifest": storage.join(output_uri, name)}
    if m is None:
        return ref
    return {"digest": m.get("identity") or storage.sha256_uri(ref["manifest"]), **ref}


def tree_digest(uri: str) -> str:
    """Digest of a directory (or one file) by content: its files' relative paths and sha256 (no
    dot-entries: caches, a checkpoint's random `.metadata`) — e.g. a tokenizer with its config and
    chat template, wherever it is stored."""
    fs, path = storage.get_fs(uri)
    if fs.isfile(path):
        return storage.sha256_uri(uri)
    base = path.rstrip("/")
    proto = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    digests = {}
    for p in sorted(fs.find(base)):
        rel = p[len(base):].lstrip("/")
        if rel and not skipped(rel):
            digests[rel] = storage.sha256_uri((proto + p) if proto and proto != "file://" else p)
    return _tree_of(digests)
