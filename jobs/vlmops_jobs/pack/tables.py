"""Parquet tables in and out through fsspec (any `s3://`, `file://` or plain path)."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from ..common import storage


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = storage.get_fs(uri)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


def row_count(uri: str) -> int:
    fs, path = storage.get_fs(uri)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def write_table(uri: str, table: pa.Table, **options) -> str:
    """Write atomically; returns the file's digest."""
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    return storage.write_bytes_atomic(uri, buf.getvalue())
