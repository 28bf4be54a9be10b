"""Pack every lengths shard into sequences (one invocation): plan/plan.parquet + plan/manifest.json.

Samples longer than the sequence length are dropped (counted) or, with --truncate, cut to it;
samples of zero tokens are dropped (counted). The stats report the best lower bound on the
sequence count and the plan's gap to it.
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from vlmops_contract.layouts import pack as layout

from ..common import lineage, storage
from ..common.result import JobError
from . import algorithms
from .committed import KIND, lengths_records
from .log import log, throughput
from .plot import stats_png
from .tables import read_table, write_table


def add_arguments(p) -> None:
    p.add_argument("--sequence-length", type=int, default=8192)
    p.add_argument("--algorithm", choices=sorted(algorithms.ALGORITHMS), default="BestFitDecreasing")
    p.add_argument("--truncate", action="store_true")
    p.add_argument("--improve", dest="improve", action="store_true", default=True,
                   help="improvement passes where the lower bound says BFD may be far from the optimum "
                        "(default on; kept only with strictly fewer sequences)")
    p.add_argument("--no-improve", dest="improve", action="store_false")
    p.add_argument("--shards", type=int, default=1, help="shard count of the lengths step (all must be committed)")
    p.add_argument("--output", required=True)


class Samples(NamedTuple):
    """Every sample of every lengths shard, in shard order: where it is (part, row) and its length."""

    ids: pa.ChunkedArray
    tokens: np.ndarray
    part: np.ndarray
    row: np.ndarray


def _read_samples(output: str, records: list[dict]) -> Samples:
    ids, tokens, parts, rows = [], [], [], []
    for record in records:
        shard = record["stats"]["shard"]
        table = read_table(storage.join(output, layout.lengths_part(shard)), columns=["id", "tokens"])
        ids.append(table.column("id"))
        lengths = table.column("tokens").to_numpy().astype(np.int64)
        tokens.append(lengths)
        parts.append(np.full(lengths.size, shard, np.int32))
        rows.append(np.arange(lengths.size, dtype=np.int32))
    samples = Samples(pa.chunked_array([c for column in ids for c in column.chunks], pa.string()),
                      np.concatenate(tokens), np.concatenate(parts), np.concatenate(rows))
    if len(pc.unique(samples.ids)) != len(samples.ids):
        duplicate = next(v["values"] for v in pc.value_counts(samples.ids).to_pylist() if v["counts"] > 1)
        raise JobError(f"sample {duplicate} id: duplicate sample id across lengths shards")
    return samples


def _stats(effective: np.ndarray, packing: algorithms.Packing, capacity: int, n_long: int, n_empty: int,
           truncate: bool) -> dict:
    placed = packing.order
    tokens = int(effective[placed].sum())
    n_seq = packing.n_bins
    info = packing.info
    bound = info.get("lowerBound", -(-tokens // capacity) if tokens else 0)
    stats = {
        "samples": int(effective.size),
        "sequences": n_seq,
        "lowerBoundSequences": bound,
        "lowerBoundMethod": info.get("lowerBoundMethod", "volume"),
        "gapToLowerBound": info.get("gapToLowerBound", round(n_seq / bound - 1, 6) if bound else 0.0),
        "compressionRatio": round(placed.size / n_seq, 4) if n_seq else 0.0,
        "packingEfficiency": round(tokens / (n_seq * capacity), 6) if n_seq else 0.0,
        "tokens": tokens,
        "paddingTokens": n_seq * capacity - tokens,
        "droppedTooLong": 0 if truncate else n_long,
        "droppedEmpty": n_empty,
    }
    if "bfdSequences" in info:
        stats["bfdSequences"] = info["bfdSequences"]
        stats["planPass"] = info["pass"]
    if truncate:
        stats["truncated"] = n_long
    return stats


def _check_lengths(samples: Samples) -> None:
    """A negative token count is a corrupt lengths part (the lengths step never writes one)."""
    bad = np.flatnonzero(samples.tokens < 0)
    if bad.size:
        i = int(bad[0])
        raise JobError(f"sample {samples.ids[i].as_py()} tokens: {int(samples.tokens[i])} is negative "
                       f"(lengths part {int(samples.part[i])}, row {int(samples.row[i])})")


def _write_plan(output: str, samples: Samples, effective: np.ndarray, packing: algorithms.Packing,
                capacity: int) -> dict[str, str]:
    """plan.parquet (rows grouped by sequence) and stats.png; their digests."""
    placed = packing.order
    table = pa.table({
        "sequence": pa.array(packing.bin_of[placed].astype(np.int32)),
        "part": pa.array(samples.part[placed]),
        "row": pa.array(samples.row[placed]),
        "tokens": pa.array(effective[placed].astype(np.int32)),
    })
    files = {layout.PLAN: write_table(storage.join(output, layout.PLAN), table, row_group_size=1 << 20)}
    png = stats_png(samples.tokens, packing.loads, capacity)
    if png is not None:
        files[layout.PLAN_STATS_PNG] = storage.write_bytes_atomic(storage.join(output, layout.PLAN_STATS_PNG), png)
    return files


def run(args) -> dict[str, Any]:
    started = time.perf_counter()
    capacity = int(args.sequence_length)
    if capacity <= 0:
        raise JobError(f"spec sequenceLength: must be positive, got {capacity}")
    records = lengths_records(args.output, args.shards)
    samples = _read_samples(args.output, records)
    lengths, n = samples.tokens, int(samples.tokens.size)
    _check_lengths(samples)
    n_long = int((lengths > capacity).sum())
    n_empty = int((lengths == 0).sum())
    if n and n_long == n and not args.truncate:
        raise JobError(f"spec sequenceLength: {capacity} is smaller than every sample (shortest {int(lengths.min())} tokens)")
    effective = np.minimum(lengths, capacity) if args.truncate else lengths
    packing_started = time.perf_counter()
    packing = algorithms.pack(effective, capacity, args.algorithm, improve=args.improve)
    packing_seconds = time.perf_counter() - packing_started
    stats = _stats(effective, packing, capacity, n_long, n_empty, args.truncate)
    files = _write_plan(args.output, samples, effective, packing, capacity)
    params = {"sequenceLength": capacity, "algorithm": args.algorithm, "truncate": bool(args.truncate),
              "improve": bool(args.improve)}
    inputs = {"lengths": [{"uri": layout.lengths_part(r["stats"]["shard"]),  # relative to the output
                           "digest": r["files"][layout.lengths_part(r["stats"]["shard"])]} for r in records]}
    manifest = lineage.build_manifest(kind=KIND, step="plan", inputs=inputs, parameters=params, files=files, stats=stats)
    out = lineage.commit_manifest(args.output, manifest, name=layout.PLAN_MANIFEST)
    log(f"plan: {args.algorithm} packed {n} samples into {packing.n_bins} sequences in {packing_seconds:.3f}s "
        f"({n / max(packing_seconds, 1e-9):.0f} items/s, {lengths.nbytes / max(packing_seconds, 1e-9):.0f} bytes/s); "
        f"lower bound {stats['lowerBoundSequences']} ({stats['lowerBoundMethod']}), "
        f"gap {100 * stats['gapToLowerBound']:.4f}%")
    throughput("plan (total)", n, lengths.nbytes, time.perf_counter() - started)
    return {"stats": stats, "output": out}
