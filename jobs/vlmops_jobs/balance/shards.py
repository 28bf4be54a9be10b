"""How the sharded steps (embed, retrieve) commit, and how the next step finds their shards.

A shard writes its data files, then a JSON commit marker naming the parameters it ran with and
each file's digest. A re-run whose parameters match and whose files still verify is skipped; a
killed shard leaves no marker, and the next step refuses to start until it is rerun.
"""
from __future__ import annotations

import io
import os
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmops_contract.layouts import balance as layout
from vlmops_jobs.common import storage
from vlmops_jobs.common.result import JobError

# marker parameters that differ between the shards of one run (everything else must agree)
SHARD_ONLY = ("shard", "rows", "inputs", "shards")


def log(msg: str) -> None:
    print(f"[balance] {msg}", file=sys.stderr, flush=True)


def fault(point: str) -> None:
    """Test hook: VLMOPS_BALANCE_FAULT=<point> kills the process there (like a pod eviction)."""
    if os.environ.get("VLMOPS_BALANCE_FAULT") == point:
        log(f"fault injected at {point}: exiting")
        os._exit(137)


def names(output: str, files: dict[str, str]) -> dict[str, str]:
    """A layout's relative file names as URIs under `output`."""
    return {k: storage.join(output, v) for k, v in files.items()}


def remove_own_temps(marker_uri: str) -> None:
    """Temp keys a killed earlier attempt of this shard left behind (atomic_open's `.tmp-<uuid>-<name>`)."""
    fs, path = storage.get_fs(marker_uri)
    parent, base = path.rsplit("/", 1)
    stem = base[: -len(".json")]
    try:
        fs.invalidate_cache(parent)
        for p in fs.ls(parent, detail=False):
            name = p.rsplit("/", 1)[-1]
            if name.startswith(".tmp-") and name.split("-", 2)[-1].startswith(stem + "."):
                fs.rm(p)
    except (FileNotFoundError, OSError):
        pass


def embedded_inputs(output: str, shards: int) -> tuple[str, str]:
    """For `retrieve --embedded`: the embed outputs, after checking every embed shard committed."""
    for i in range(shards):
        if not storage.exists(storage.join(output, layout.embed_shard(i, shards)["marker"])):
            raise JobError(f"output embed: embed shard {i} of {shards} is not committed under "
                           f"{storage.join(output, layout.embed_dir(shards))} "
                           f"(run `embed --shard {i} --shards {shards}` first)")
    return storage.join(output, layout.embed_images(shards)), storage.join(output, layout.embed_concepts(shards))


def read_retrieve_shards(output: str, shards: int) -> tuple[list[dict[str, Any]], list[pa.Table], np.ndarray]:
    """Every retrieve shard's marker and top-k table, and the summed concept counts; the shards
    must all be committed, intact, retrieved with the same parameters and cover every row once."""
    markers, tabs, total = [], [], None
    for i in range(shards):
        marker, tab, counts = _read_retrieve_shard(output, i, shards)
        total = counts.astype(np.int64) if total is None else total + counts
        markers.append(marker)
        tabs.append(tab)
    _check_same_run(markers)
    return markers, tabs, total


def _read_retrieve_shard(output: str, i: int, shards: int) -> tuple[dict[str, Any], pa.Table, np.ndarray]:
    """Shard i's marker and files, read under `output` (the layout's names, not the locations the
    marker recorded: a copied or moved output reads the same) and checked against the marker's
    digests."""
    uris = names(output, layout.retrieve_shard(i, shards))
    if not storage.exists(uris["marker"]):
        raise JobError(f"output shards: shard {i} of {shards} is not committed under "
                       f"{storage.join(output, layout.retrieve_dir(shards))} "
                       f"(run `retrieve --shard {i} --shards {shards}` first)")
    m = storage.read_json(uris["marker"])
    blobs = {}
    for key in ("topk", "counts"):
        try:
            blobs[key] = storage.read_bytes(uris[key])
        except FileNotFoundError:
            raise JobError(f"output shards: shard {i} of {shards} is committed but its file {uris[key]} is missing "
                           f"(re-run `retrieve --shard {i} --shards {shards}`)") from None
        if storage.sha256_bytes(blobs[key]) != m["files"][key]["digest"]:
            raise JobError(f"output shards: shard {i} of {shards} files do not match their digests (re-run that shard)")
    return m, pq.read_table(io.BytesIO(blobs["topk"])), np.load(io.BytesIO(blobs["counts"]))


def _check_same_run(markers: list[dict[str, Any]]) -> None:
    ref = {k: v for k, v in markers[0]["parameters"].items() if k not in SHARD_ONLY}
    pos = 0
    for i, m in enumerate(markers):
        p = {k: v for k, v in m["parameters"].items() if k not in SHARD_ONLY}
        if p != ref:
            diff = sorted(k for k in set(p) | set(ref) if p.get(k) != ref.get(k))
            raise JobError(f"output shards: shard {i} was retrieved with different parameters ({', '.join(diff)})")
        lo, hi = m["parameters"]["rows"]
        if lo != pos:
            raise JobError(f"output shards: shard {i} covers rows [{lo}, {hi}) but {pos} was expected")
        pos = hi
    if pos != markers[0]["totalRows"]:
        raise JobError(f"output shards: shards cover {pos} rows of {markers[0]['totalRows']}")
