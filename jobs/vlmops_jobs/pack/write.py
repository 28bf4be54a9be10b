"""Write the plan's sequences into WebDataset tar shards (sharded); the pod that sees every tar
committed also finalizes (.nv-meta/ + manifest.json).

Tar j holds sequences [j*K, (j+1)*K) (K = --shard-size-samples); write pod I of N writes tars
[I*T/N, (I+1)*T/N).
"""
from __future__ import annotations

import time
from typing import Any

from vlmops_contract.layouts import pack as layout

from ..common import image_refs, storage
from ..common.result import JobError, shard_index
from .committed import committed_tars, read_plan, tar_count, write_parameters
from .finalize import add_format_arguments, finalize
from .log import log, throughput
from .tables import read_table
from .tars import PlannedSequences, write_tar

LENGTHS_COLUMNS = ["id", "tokens", "imageTokens", "images", "conversations"]


def add_arguments(p) -> None:
    add_format_arguments(p, shard_size_default=10000)
    p.add_argument("--shard", type=int, default=None)
    p.add_argument("--no-finalize", action="store_true", help="never write the manifest from this pod")


def _tars_to_write(output: str, tars: range, params: dict) -> list[int]:
    """This pod's tars that are not yet committed with these parameters."""
    todo = []
    for index in tars:
        record_uri = storage.join(output, layout.shard_record(index))
        if storage.exists(record_uri) and storage.read_json(record_uri).get("parameters") == params:
            log(f"write: tar {index} already committed, reusing")
            continue
        todo.append(index)
    return todo


def _lengths_rows(output: str, planned: PlannedSequences, todo: list[int], per_tar: int) -> dict[int, list[dict]]:
    """The rows of every lengths part the tars in `todo` take samples from, by part."""
    if not todo:
        return {}
    first, stop = todo[0] * per_tar, min(planned.n, (todo[-1] + 1) * per_tar)
    return {part: read_table(storage.join(output, layout.lengths_part(part)), columns=LENGTHS_COLUMNS).to_pylist()
            for part in planned.parts_of(first, stop)}


def run(args) -> dict[str, Any]:
    started = time.perf_counter()
    shard, shards = shard_index(args.shard, args.shards, "write"), args.shards
    per_tar = args.shard_size_samples
    if per_tar <= 0:
        raise JobError(f"spec shardSize.samples: must be positive, got {per_tar}")
    plan = read_plan(args.output)
    n_tars = tar_count(plan.n_sequences, per_tar)
    mine = range(n_tars * shard // shards, n_tars * (shard + 1) // shards)
    params = write_parameters(per_tar, args.format, plan)
    planned = PlannedSequences(plan.table, plan.n_sequences)
    todo = _tars_to_write(args.output, mine, params)
    rows = _lengths_rows(args.output, planned, todo, per_tar)
    if rows:  # the tables name images relative to the lengths step's imageRoot
        root = storage.read_json(storage.join(args.output, layout.lengths_record(0)))["locations"]["imageRoot"]
        for part_rows in rows.values():
            for rec in part_rows:
                rec["images"] = [image_refs.resolve(root, x) for x in rec["images"] or []]
    n_bytes = n_samples = 0
    for index in todo:
        sequences = range(index * per_tar, min(plan.n_sequences, (index + 1) * per_tar))
        written = write_tar(args.output, index, sequences, planned, rows, plan.capacity)
        n_bytes += written.bytes
        n_samples += written.samples
        storage.write_json_atomic(storage.join(args.output, layout.shard_record(index)), written.record(params))
    throughput(f"write shard {shard}", n_samples, n_bytes, time.perf_counter() - started)
    # the pod that sees every tar committed writes the metadata and the manifest (idempotent)
    records = committed_tars(args.output, n_tars, params)
    if records is not None and not args.no_finalize:
        return finalize(args.output, args.format, plan, records, params)
    return {"stats": {"shard": shard, "tars": len(mine), "samplesWritten": n_samples, "bytes": n_bytes},
            "output": {"uri": args.output.rstrip("/")}}
