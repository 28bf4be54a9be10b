"""Relative storage locations: resolved against a prefix so one YAML runs anywhere.

`vlmops run` uses `--storage` (default file://<workdir>/storage); the operator uses the chart's
`jobs.storage.prefix`. Without a prefix the operator rejects relative locations (a pod would
read them as paths inside its own container).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

# Spec fields that hold storage locations.
URI_FIELDS = {"uri", "tokenizer", "includePath", "checkpoint"}


def _is_relative(v: Any) -> bool:
    return isinstance(v, str) and "://" not in v and not v.startswith("/")


def locations(spec: Any, path: str = "spec") -> Iterator[tuple[str, str]]:
    """(field path, value) of every storage location in a spec (wire format)."""
    if isinstance(spec, dict):
        for k, v in spec.items():
            if isinstance(v, str) and (k in URI_FIELDS or (k == "model" and path.endswith(".embedder"))):
                yield f"{path}.{k}", v
            elif k == "huggingFace" and isinstance(v, str) and not _is_relative(v):
                yield f"{path}.{k}", v  # a snapshot location (a bare repo id is not one: the HF cache resolves it)
            else:
                yield from locations(v, f"{path}.{k}")
    elif isinstance(spec, list):
        for i, v in enumerate(spec):
            yield from locations(v, f"{path}.{i}")


def relative_locations(spec: Any) -> Iterator[tuple[str, str]]:
    """(field path, value) of every relative location in a spec (wire format)."""
    return ((path, v) for path, v in locations(spec) if _is_relative(v))


def resolve_uris(spec: Any, prefix: str, _path: str = "spec") -> Any:
    """A copy of `spec` with every relative location joined onto `prefix`."""
    if isinstance(spec, dict):
        out = {}
        for k, v in spec.items():
            here = f"{_path}.{k}"
            if (k in URI_FIELDS or (k == "model" and _path.endswith(".embedder"))) and _is_relative(v):
                out[k] = join(prefix, v)
            else:
                out[k] = resolve_uris(v, prefix, here)
        return out
    if isinstance(spec, list):
        return [resolve_uris(v, prefix, f"{_path}.{i}") for i, v in enumerate(spec)]
    return spec


def join(prefix: str, rel: str) -> str:
    if prefix.startswith("file://"):
        return str(Path(prefix.removeprefix("file://")) / rel)  # local paths work for tokenizers too
    return prefix.rstrip("/") + "/" + rel
