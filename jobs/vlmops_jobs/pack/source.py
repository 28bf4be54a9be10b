"""The lengths step's input: the sample table (parquet files) and this shard's rows of it."""
from __future__ import annotations

import pyarrow.parquet as pq
from vlmops_contract.layouts import balance as balance_layout
from vlmops_contract.layouts import join

from ..common import storage
from ..common.result import JobError
from .tables import row_count


def resolve_source(uri: str) -> list[str]:
    """Parquet file, prefix of parquet files, or a BalancedCorpus output dir (its selected/ parts)."""
    fs, path = storage.get_fs(uri)
    proto = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    if proto == "file://":
        proto = ""
    if fs.isfile(path):
        return [uri]
    if not fs.exists(path):
        raise JobError(f"source {uri}: does not exist")
    base = path.rstrip("/")
    if fs.exists(join(base, balance_layout.SELECTED)):  # a BalancedCorpus output: its selection
        base = join(base, balance_layout.SELECTED)
    files = sorted(p for p in fs.find(base) if p.endswith(".parquet") and "/." not in p[len(base):])
    if not files:
        raise JobError(f"source {uri}: no parquet files")
    return [(proto + p) if proto else p for p in files]


def row_counts(files: list[str]) -> list[int]:
    return [row_count(f) for f in files]


def _read_slice(uri: str, start: int, stop: int) -> list[dict]:
    """Rows [start, stop) of one file: id, images (default []), conversations; ids as strings."""
    fs, path = storage.get_fs(uri)
    with fs.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        for need in ("id", "conversations"):
            if need not in names:
                raise JobError(f"source {uri} {need}: column missing")
        columns = [c for c in ("id", "images", "conversations") if c in names]
        table = parquet.read(columns=columns).slice(start, stop - start)
    rows = table.to_pylist()
    for row in rows:
        row.setdefault("images", [])
        if row["id"] is None or str(row["id"]) == "":
            raise JobError(f"source {uri} id: empty sample id")
        row["id"] = str(row["id"])
    return rows


def read_shard_rows(files: list[str], counts: list[int], shard: int, shards: int) -> tuple[list[dict], list[str]]:
    """This shard's rows (split evenly by global row index across the files) and, per row, the
    directory its image paths are relative to."""
    total = sum(counts)
    lo, hi = total * shard // shards, total * (shard + 1) // shards
    rows: list[dict] = []
    bases: list[str] = []
    offset = 0
    for uri, n in zip(files, counts):
        start, stop = max(lo, offset), min(hi, offset + n)
        if start < stop:
            part = _read_slice(uri, start - offset, stop - offset)
            rows += part
            bases += [uri.rsplit("/", 1)[0] if "/" in uri else "."] * len(part)
        offset += n
    return rows, bases
