"""Reading parquet tables for the BalancedCorpus job: file listing, row splits, vectors.

A source is one parquet file or a directory/prefix of parquet files. Its rows are numbered
globally over the *sorted* file list; shard i of N owns rows [i*R//N, (i+1)*R//N). Nothing
here depends on how many shards there are beyond that split, so every per-row result (and
the final selection) is the same for any shard count.
"""
from __future__ import annotations

import hashlib
import io
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmops_jobs.common import storage
from vlmops_jobs.common.result import JobError


@dataclass(frozen=True)
class SourceFile:
    uri: str  # full URI (protocol kept) of the file
    rows: int
    size: int
    start: int  # global index of the file's first row


def _protocol_prefix(uri: str) -> str:
    return uri.split("://", 1)[0] + "://" if "://" in uri else ""


def _full_uri(base_uri: str, path: str) -> str:
    proto = _protocol_prefix(base_uri)
    if proto == "file://" and not path.startswith("/"):
        path = "/" + path
    return proto + path if proto else path


def list_parquet(uri: str, what: str) -> list[SourceFile]:
    """Sorted parquet files of a file/prefix URI with their row counts (from the footer)."""
    if not uri:
        raise JobError(f"{what} uri: missing")
    try:
        fs, path = storage.get_fs(uri)
        if fs.isfile(path):
            paths = [path]
        elif fs.isdir(path):
            paths = sorted(p for p in fs.find(path) if p.endswith(".parquet")
                           and not posixpath.basename(p).startswith((".", "_")))
        else:
            raise JobError(f"{what} uri: {uri} does not exist")
    except JobError:
        raise
    except (OSError, ValueError) as e:  # unreachable endpoint, bad bucket, ...
        raise JobError(f"{what} uri: cannot list {uri}: {e}") from e
    if not paths:
        raise JobError(f"{what} uri: no parquet files under {uri}")
    out: list[SourceFile] = []
    start = 0
    for p in paths:
        try:
            with fs.open(p, "rb") as f:
                md = pq.ParquetFile(f).metadata
            size = fs.info(p)["size"]
        except Exception as e:
            raise JobError(f"{what} uri: {_full_uri(uri, p)} is not a readable parquet file: {e}") from e
        out.append(SourceFile(_full_uri(uri, p), md.num_rows, int(size), start))
        start += md.num_rows
    return out


def total_rows(files: list[SourceFile]) -> int:
    return files[-1].start + files[-1].rows if files else 0


def shard_range(n_rows: int, shard: int, shards: int) -> tuple[int, int]:
    return shard * n_rows // shards, (shard + 1) * n_rows // shards


def source_shard(uri: str, shard: int, shards: int) -> tuple[list[SourceFile], int, int, int]:
    """The source's files, its row count and the shard's rows [lo, hi); an empty shard is bad input."""
    files = list_parquet(uri, "source")
    n_rows = total_rows(files)
    lo, hi = shard_range(n_rows, shard, shards)
    if hi <= lo:
        raise JobError(f"source uri: shard {shard} of {shards} is empty ({n_rows} rows in {uri})")
    return files, n_rows, lo, hi


def check_columns(schema: pa.Schema, fields: dict[str, str], what: str, uri: str) -> None:
    names = set(schema.names)
    for flag, col in fields.items():
        if col not in names:
            raise JobError(f"{what} {flag}: column {col!r} not in {uri} (columns: {sorted(names)})")


@dataclass
class ReadPart:
    file: SourceFile
    table: pa.Table  # rows [lo, hi) of the file
    lo: int
    digest: str
    nbytes: int


def read_rows(files: list[SourceFile], lo: int, hi: int, columns: list[str], what: str,
              fields: dict[str, str]):
    """Yield ReadPart for each file overlapping global rows [lo, hi), hashing each whole file
    (the bytes are read once: hash and parse from the same buffer)."""
    for f in files:
        a, b = max(lo, f.start), min(hi, f.start + f.rows)
        if a >= b:
            continue
        data = storage.read_bytes(f.uri)
        digest = storage.sha256_bytes(data)
        pf = pq.ParquetFile(io.BytesIO(data))
        check_columns(pf.schema_arrow, fields, what, f.uri)
        # read only the row groups that overlap, then slice
        rg_start, groups, first = 0, [], None
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            g0, g1 = f.start + rg_start, f.start + rg_start + n
            if g1 > a and g0 < b:
                groups.append(g)
                if first is None:
                    first = g0
            rg_start += n
        t = pf.read_row_groups(groups, columns=columns) if groups else pf.schema_arrow.empty_table().select(columns)
        t = t.slice(a - first, b - a) if groups else t
        yield ReadPart(f, t, a - f.start, digest, len(data))
        del data


def vectors(col: pa.ChunkedArray | pa.Array, what: str, field: str, uri: str) -> np.ndarray:
    """A list/fixed-size-list float column as a float32 (n, d) matrix; rejects ragged/null/NaN."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if arr.null_count:
        raise JobError(f"{what} {field}: {arr.null_count} null vectors in {uri}")
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
        values = arr.flatten()
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        if n == 0:
            return np.zeros((0, 0), np.float32)
        lens = np.diff(arr.offsets.to_numpy())
        d = int(lens[0])
        if (lens != d).any():
            raise JobError(f"{what} {field}: vectors of different lengths ({int(lens.min())}..{int(lens.max())}) in {uri}")
        values = arr.flatten()
    else:
        raise JobError(f"{what} {field}: column type {t} is not a list of floats in {uri}")
    if not (pa.types.is_floating(values.type)):
        raise JobError(f"{what} {field}: element type {values.type} is not float16/float32 in {uri}")
    if values.null_count:
        raise JobError(f"{what} {field}: null elements in {uri}")
    m = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, d)
    return m


def normalize(m: np.ndarray, what: str, field: str, ids=None) -> np.ndarray:
    """L2-normalise rows in place (float32); NaN/inf or zero vectors are bad input."""
    bad = ~np.isfinite(m).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        name = f" (id {ids[i]!r})" if ids is not None else f" (row {i})"
        raise JobError(f"{what} {field}: {int(bad.sum())} vectors contain NaN/inf{name}")
    norms = np.linalg.norm(m, axis=1)
    zero = norms == 0
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        name = f" (id {ids[i]!r})" if ids is not None else f" (row {i})"
        raise JobError(f"{what} {field}: {int(zero.sum())} zero vectors{name}")
    m /= norms[:, None]
    return m


def id_hashes(ids: list[str]) -> np.ndarray:
    """Seed-independent 64-bit hash of each sample id (the balance step mixes in the seed)."""
    out = np.empty(len(ids), dtype=np.uint64)
    for i, s in enumerate(ids):
        out[i] = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
    return out


def splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def uniforms(hashes: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """Deterministic U[0,1) per sample from its id hash and the seed (independent of sharding)."""
    key = splitmix64(np.array([(seed * 0x2545F4914F6CDD1D + salt) & 0xFFFFFFFFFFFFFFFF], np.uint64))[0]
    with np.errstate(over="ignore"):
        h = splitmix64(hashes ^ key)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def parquet_bytes(t: pa.Table, row_group_size: int | None = None) -> bytes:
    """A table as zstd parquet bytes (written whole with `storage.write_bytes_atomic`)."""
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="zstd", row_group_size=row_group_size)
    return buf.getvalue()


def list_column(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    """A list column from int32 row offsets (n + 1) and the flat values."""
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def absolute_image_uri(parquet_uri: str, img: str) -> str:
    """Images are URIs or paths relative to the parquet file's directory: make them absolute URIs."""
    if "://" in img:
        return img
    proto = _protocol_prefix(parquet_uri)
    path = parquet_uri[len(proto):]
    if img.startswith("/"):
        return ("file://" + img) if proto in ("", "file://") else proto + img.lstrip("/")
    if proto == "":
        path = posixpath.abspath(path)
        proto = "file://"
    d = posixpath.dirname(path)
    return proto + posixpath.normpath(posixpath.join(d, img))
