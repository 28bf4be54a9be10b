"""The selection's part files: `selected/part-<j>.parquet`, the corpus the pack job reads.

Selected rows in global source order, `part_rows` per part file: the parts do not depend on the
shard count. Columns: id, [images (relative to the source's root, `common/image_refs.py`; absolute
URIs as the source wrote them), conversations,] concepts list<int32>.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmops_contract.layouts import balance as layout
from vlmops_jobs.common import image_refs, storage
from vlmops_jobs.common.result import JobError

from . import tables

ROW_GROUP = 256 * 1024
SAMPLE_COLUMNS = ("images", "conversations")  # source columns carried into the selection when present


def write_selected(output: str, src_files: list[tables.SourceFile], id_field: str, keep_cols: list[str],
                   table: pa.Table, sel: np.ndarray, conc: np.ndarray, part_rows: int,
                   files: dict[str, str], root: str) -> int:
    """Write the parts (adding their digests to `files`); returns the bytes written.

    `table`: the retrieve shards' rows in global order; `sel`: positions in it to keep;
    `conc`: (n, k) concept ids per row, -1 padded."""
    sel_rows = table.column("row").to_numpy()[sel]
    parts = _Parts(output, part_rows, files)
    for f in src_files:
        a, b = np.searchsorted(sel_rows, [f.start, f.start + f.rows])
        if a == b:
            continue
        idx = sel[a:b]  # positions in `table`
        cols: dict[str, Any] = {"id": table.column("id").take(pa.array(idx))}
        if keep_cols:
            cols.update(_source_columns(f, id_field, keep_cols, sel_rows[a:b] - f.start, cols["id"], root))
        cols["concepts"] = _concepts_of(conc[idx])
        parts.add(pa.table(cols))
    parts.close(keep_cols)
    return parts.nbytes


def _source_columns(f: tables.SourceFile, id_field: str, keep_cols: list[str], local: np.ndarray,
                    ids: pa.ChunkedArray, root: str) -> dict[str, Any]:
    """`keep_cols` of the file's rows `local`, checked to still hold the retrieved ids."""
    fs, path = storage.get_fs(f.uri)
    with fs.open(path, "rb") as fh:
        src = pq.ParquetFile(fh).read(columns=[id_field] + keep_cols)
    src = src.take(pa.array(local))
    if src.column(id_field).cast(pa.string()).to_pylist() != ids.to_pylist():
        raise JobError(f"source uri: {f.uri} rows changed since retrieval (ids differ)")
    cols: dict[str, Any] = {}
    if "images" in keep_cols:  # relative to the source's root (the manifest's locations.imageRoot)
        imgs = src.column("images").to_pylist()
        where = f.uri.rsplit("/", 1)[0]
        cols["images"] = pa.array([[image_refs.relative_to_root(root, where, x) for x in (l or [])] for l in imgs],
                                  pa.list_(pa.string()))
    if "conversations" in keep_cols:
        cols["conversations"] = src.column("conversations").combine_chunks()
    return cols


def _concepts_of(c: np.ndarray) -> pa.Array:
    m = c >= 0
    offsets = np.zeros(len(c) + 1, np.int32)
    np.cumsum(m.sum(axis=1), out=offsets[1:])
    return tables.list_column(offsets, pa.array(c[m], pa.int32()))


class _Parts:
    """Buffers selected rows and writes them `part_rows` per part file, in order."""

    def __init__(self, output: str, part_rows: int, files: dict[str, str]):
        self.output, self.part_rows, self.files = output, part_rows, files
        self.pending: list[pa.Table] = []
        self.pending_n = self.part = self.nbytes = 0

    def add(self, t: pa.Table) -> None:
        self.pending.append(t)
        self.pending_n += t.num_rows
        self._flush(final=False)

    def close(self, keep_cols: list[str]) -> None:
        self._flush(final=True)
        if self.part == 0:  # nothing selected: still write an empty part so readers see the schema
            self._write(_empty(keep_cols))

    def _flush(self, final: bool) -> None:
        while self.pending_n >= self.part_rows or (final and self.pending_n > 0):
            t = pa.concat_tables(self.pending)
            head, rest = t.slice(0, self.part_rows), t.slice(self.part_rows)
            self._write(head)
            self.pending, self.pending_n = ([rest] if rest.num_rows else []), rest.num_rows

    def _write(self, t: pa.Table) -> None:
        name = layout.selected_part(self.part)
        data = tables.parquet_bytes(t, ROW_GROUP)
        self.files[name] = storage.write_bytes_atomic(storage.join(self.output, name), data)
        self.nbytes += len(data)
        self.part += 1


def _empty(keep_cols: list[str]) -> pa.Table:
    cols = {"id": pa.array([], pa.string())}
    if "images" in keep_cols:
        cols["images"] = pa.array([], pa.list_(pa.string()))
    if "conversations" in keep_cols:
        cols["conversations"] = pa.array([], pa.string())
    cols["concepts"] = pa.array([], pa.list_(pa.int32()))
    return pa.table(cols)


def remove_stale_parts(output: str, files: dict[str, str]) -> None:
    """Parts an earlier run wrote that this one did not (a smaller selection or larger parts)."""
    fs, path = storage.get_fs(storage.join(output, layout.SELECTED))
    try:
        fs.invalidate_cache(path)
        present = fs.ls(path, detail=False)
    except FileNotFoundError:
        return
    for p in present:
        rel = layout.SELECTED + "/" + p.rstrip("/").rsplit("/", 1)[-1]
        if rel not in files:
            try:
                fs.rm(p)
            except FileNotFoundError:
                pass
