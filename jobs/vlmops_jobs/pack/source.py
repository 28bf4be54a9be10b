"""The lengths step's input: the sample table (parquet files) and this shard's rows of it.

A BalancedCorpus output is read through its manifest: the selection's parts it names, each
checked against its digest when read (never the directory listing: a stray or half-rewritten
part is not the corpus). An output without a manifest is not committed and is refused.
"""
from __future__ import annotations

import io
from typing import NamedTuple

import pyarrow.parquet as pq
from vlmops_contract.layouts import MANIFEST
from vlmops_contract.layouts import balance as balance_layout
from vlmops_contract.layouts import join

from ..common import storage
from ..common.result import JobError
from .tables import row_count


class SourceFiles(NamedTuple):
    """The parquet files in row order; `digests[uri]` for those a manifest vouches for."""

    files: list[str]
    digests: dict[str, str]


def resolve_source(uri: str) -> SourceFiles:
    """Parquet file, prefix of parquet files, or a BalancedCorpus output dir (the selected/ parts
    its manifest names)."""
    fs, path = storage.get_fs(uri)
    proto = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    if proto == "file://":
        proto = ""
    if fs.isfile(path):
        return SourceFiles([uri], {})
    if not fs.exists(path):
        raise JobError(f"source {uri}: does not exist")
    base = path.rstrip("/")
    if fs.exists(join(base, balance_layout.SELECTED)):  # a BalancedCorpus output: its selection
        return _balanced(uri)
    files = sorted(p for p in fs.find(base) if p.endswith(".parquet") and "/." not in p[len(base):])
    if not files:
        raise JobError(f"source {uri}: no parquet files")
    return SourceFiles([(proto + p) if proto else p for p in files], {})


def _balanced(uri: str) -> SourceFiles:
    manifest_uri = storage.join(uri, MANIFEST)
    if not storage.exists(manifest_uri):
        raise JobError(f"source {uri}: BalancedCorpus output is not committed (no {MANIFEST}: its balance step "
                       "has not finished, or was stopped while re-balancing)")
    files = storage.read_json(manifest_uri).get("files") or {}
    parts = sorted(name for name in files if name.startswith(balance_layout.SELECTED + "/") and name.endswith(".parquet"))
    if not parts:
        raise JobError(f"source {uri}: its {MANIFEST} names no {balance_layout.SELECTED}/ parts")
    uris = [storage.join(uri, name) for name in parts]
    return SourceFiles(uris, {u: files[name] for u, name in zip(uris, parts)})


def row_counts(files: list[str]) -> list[int]:
    return [row_count(f) for f in files]


def _read_slice(uri: str, start: int, stop: int, digest: str | None) -> list[dict]:
    """Rows [start, stop) of one file: id, images (default []), conversations; ids as strings.
    With a `digest`, the file must match it."""
    if digest is None:
        fs, path = storage.get_fs(uri)
        with fs.open(path, "rb") as f:
            table = _columns(pq.ParquetFile(f), uri)
    else:
        try:
            data = storage.read_bytes(uri)
        except FileNotFoundError:
            raise JobError(f"source {uri}: missing (its manifest names it)") from None
        if storage.sha256_bytes(data) != digest:
            raise JobError(f"source {uri}: does not match the digest its manifest records (rewritten since)")
        table = _columns(pq.ParquetFile(io.BytesIO(data)), uri)
    table = table.slice(start, stop - start)
    rows = table.to_pylist()
    for row in rows:
        row.setdefault("images", [])
        if row["id"] is None or str(row["id"]) == "":
            raise JobError(f"source {uri} id: empty sample id")
        row["id"] = str(row["id"])
    return rows


def _columns(parquet: pq.ParquetFile, uri: str):
    names = parquet.schema_arrow.names
    for need in ("id", "conversations"):
        if need not in names:
            raise JobError(f"source {uri} {need}: column missing")
    return parquet.read(columns=[c for c in ("id", "images", "conversations") if c in names])


def read_shard_rows(source: SourceFiles, counts: list[int], shard: int, shards: int) -> tuple[list[dict], list[str]]:
    """This shard's rows (split evenly by global row index across the files) and, per row, the
    directory its image paths are relative to."""
    total = sum(counts)
    lo, hi = total * shard // shards, total * (shard + 1) // shards
    rows: list[dict] = []
    bases: list[str] = []
    offset = 0
    for uri, n in zip(source.files, counts):
        start, stop = max(lo, offset), min(hi, offset + n)
        if start < stop:
            part = _read_slice(uri, start - offset, stop - offset, source.digests.get(uri))
            rows += part
            bases += [uri.rsplit("/", 1)[0] if "/" in uri else "."] * len(part)
        offset += n
    return rows, bases
