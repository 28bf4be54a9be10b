"""Image references that do not depend on where the data lives.

Sample tables name images by path relative to their parquet file's directory (or by absolute URI).
Outputs (the balanced selection, the packer's length tables) keep them relative to one root — the
source's directory or prefix — and record the root as a location in their manifest, so the tables
(and the digests over them) are the same wherever the data is stored. Absolute references are kept
as the user wrote them.
"""
from __future__ import annotations

import posixpath

from . import storage


def is_absolute(ref: str) -> bool:
    return "://" in ref or ref.startswith("/")


def _split(uri: str) -> tuple[str, str]:
    """(protocol prefix, absolute path); plain paths become file:// ones."""
    if "://" in uri:
        proto, path = uri.split("://", 1)
        return proto + "://", ("/" + path.lstrip("/")) if proto == "file" else path
    return "file://", posixpath.abspath(uri)


def source_root(source_uri: str) -> str:
    """The root image references are relative to: a parquet file's directory, or the prefix itself."""
    proto, path = _split(source_uri)
    fs, p = storage.get_fs(source_uri)
    if fs.isfile(p):
        path = posixpath.dirname(path.rstrip("/"))
    return proto + path.rstrip("/")


def relative_to_root(root: str, directory: str, ref: str) -> str:
    """`ref` as written in a table in `directory` (relative to it), made relative to `root`."""
    if is_absolute(ref):
        return ref
    rproto, rpath = _split(root)
    fproto, fpath = _split(directory)
    full = posixpath.normpath(posixpath.join(fpath, ref))
    rel = posixpath.relpath(full, rpath)
    if rproto != fproto or rel.startswith("../"):
        return fproto + full  # outside the root: an absolute reference
    return rel


def resolve(root: str, ref: str) -> str:
    """The URI to read `ref` from."""
    if "://" in ref:
        return ref
    if ref.startswith("/"):
        return "file://" + ref
    proto, path = _split(root)
    return proto + posixpath.normpath(posixpath.join(path, ref))
