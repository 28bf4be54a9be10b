"""Identity digests of committed outputs: equal for equal content wherever it is stored.

Written by the jobs (`vlmops_jobs.common.lineage.build_manifest`) and recomputed by the operator's
`vlmops lineage --verify` / `vlmops diff`, so the rule is defined once, here.

A manifest's identity is the sha256 of its canonical JSON without what says *where* (top-level
`locations`, every `uri` / `manifest` key inside `inputs`) and without what is derived or
informational (`operational` settings such as a metrics port, `stats`, `rawFiles`, `code.commit`,
`environment.image` / `imageID`, `identity` itself). It
covers the kind and step, the inputs by content (an upstream output by its identity), the
parameters, the output files' digests, the code (version + a hash of the job sources) and the
Python environment (a hash of the installed distributions).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

LOCATION_KEYS = ("uri", "manifest")
OUTSIDE_IDENTITY = ("identity", "locations", "operational", "stats", "rawFiles")
INFORMATIONAL = {"code": ("commit",), "environment": ("image", "imageID")}


def canonical_json(obj: Any) -> bytes:
    """Byte-stable JSON (sorted keys, fixed separators), as every manifest is written."""
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree_digest(digests: dict[str, str]) -> str:
    """A directory's digest from {relative path: sha256} (paths, not locations)."""
    return sha256(canonical_json({"files": dict(sorted(digests.items()))}))


def skipped(rel: str) -> bool:
    """Entries a directory digest leaves out: dot-files/-dirs (caches, a checkpoint's random
    `.metadata` save id) and __pycache__."""
    return any(part.startswith(".") or part == "__pycache__" for part in rel.split("/"))


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in LOCATION_KEYS}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def identity_view(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the identity digests: the manifest without locations and derived fields."""
    view = {k: v for k, v in manifest.items() if k not in OUTSIDE_IDENTITY}
    view["inputs"] = _strip(manifest.get("inputs") or {})
    for key, informational in INFORMATIONAL.items():
        view[key] = {k: v for k, v in (manifest.get(key) or {}).items() if k not in informational}
    return view


def identity_of(manifest: dict[str, Any]) -> str:
    return sha256(json.dumps(identity_view(manifest), sort_keys=True, separators=(",", ":")).encode())
