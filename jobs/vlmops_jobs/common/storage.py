"""fsspec I/O with atomic commits.

Object stores have no atomic rename, so "atomic" here means: write the bytes to a temporary
key, then copy/move to the final key; readers only trust a file once the manifest that
lists it (with its digest) exists, and manifests are written last.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import fsspec
from fsspec.core import url_to_fs
from vlmops_contract.identity import canonical_json, sha256  # noqa: F401  (one definition: manifests verify on both sides)
from vlmops_contract.layouts import join  # noqa: F401  (the one URI join; jobs call storage.join)
from vlmops_contract.storage_env import fsspec_options


def get_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path) for a URI; plain paths are local files."""
    fs, path = url_to_fs(uri, **fsspec_options(uri))
    return fs, path


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return fs.exists(path)


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        return f.read()


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def sha256_bytes(data: bytes) -> str:
    return sha256(data)


def sha256_uri(uri: str, chunk: int = 8 << 20) -> str:
    fs, path = get_fs(uri)
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


@contextmanager
def atomic_open(uri: str, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary sibling key, then move it onto `uri` only if the block succeeds."""
    fs, path = get_fs(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}" if parent else f".tmp-{uuid.uuid4().hex}"
    if parent and not _is_object_store(fs):
        fs.makedirs(parent, exist_ok=True)
    try:
        with fs.open(tmp, mode) as f:
            yield f
        fs.mv(tmp, path)
    except BaseException:
        try:
            if fs.exists(tmp):
                fs.rm(tmp)
        finally:
            raise


def write_bytes_atomic(uri: str, data: bytes) -> str:
    """Atomically write bytes; returns their sha256 digest."""
    with atomic_open(uri, "wb") as f:
        f.write(data)
    return sha256_bytes(data)


def write_json_atomic(uri: str, obj: Any) -> str:
    return write_bytes_atomic(uri, canonical_json(obj))


def _is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    protos = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in ("s3", "s3a", "gs", "gcs", "az", "abfs") for p in protos)
