"""Token length per sample (sharded): lengths/part-<shard>.parquet and its commit record.

Per sample: the conversation rendered with the tokenizer's chat template and counted, plus
Qwen2-VL image tokens from each image's header (see docs/jobs-pack.md).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import pyarrow as pa
from vlmops_contract.layouts import pack as layout

from ..common import image_refs, lineage, storage
from ..common.result import JobError, shard_index
from .committed import KIND
from .log import log, throughput
from .source import read_shard_rows, resolve_source, row_counts
from .tables import write_table
from .token_lengths import ImageGeometry, TextCounter, TokenCounts, count_tokens


def add_arguments(p) -> None:
    p.add_argument("--source", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--patch-size", type=int, default=14)
    p.add_argument("--merge-size", type=int, default=2)
    p.add_argument("--min-pixels", type=int, default=3136)
    p.add_argument("--max-pixels", type=int, default=2560000)
    p.add_argument("--shard", type=int, default=None)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--output", required=True)


def _tokenizer_dir(uri: str) -> str:
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if not os.path.isdir(path):
        raise JobError(f"tokenizer {uri}: path does not exist")
    return path


def _reused(args, shard: int, params: dict, inputs: dict) -> dict[str, Any] | None:
    """The result of an identical committed run of this shard (same parameters, inputs, file)."""
    part_uri = storage.join(args.output, layout.lengths_part(shard))
    record_uri = storage.join(args.output, layout.lengths_record(shard))
    if not storage.exists(record_uri):
        return None
    record = storage.read_json(record_uri)
    if record.get("parameters") == params and record.get("inputs") == inputs and storage.exists(part_uri) \
            and lineage.same_code_and_environment(record) \
            and storage.sha256_uri(part_uri) == record["files"][layout.lengths_part(shard)]:
        log(f"lengths shard {shard}: already committed, reusing")
        return {"stats": record["stats"], "output": {"uri": part_uri}}
    return None


def _check_unique(ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise JobError(f"sample {duplicate} id: duplicate sample id")


def _source(source: str, files: list[str]) -> tuple[Any, str]:
    """(the source input, the image root): a BalancedCorpus output is one input, its identity (its
    selection names images relative to its manifest's imageRoot); parquet files are inputs each."""
    fs, path = storage.get_fs(source)
    balanced = None if fs.isfile(path) else lineage.read_manifest(source)
    if balanced is not None:
        root = (balanced.get("locations") or {}).get("imageRoot") or image_refs.source_root(source)
        return lineage.upstream(source), root
    return [{"uri": f, "digest": storage.sha256_uri(f)} for f in files], image_refs.source_root(source)


def _table(rows: list[dict], counts: TokenCounts) -> pa.Table:
    return pa.table({
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "tokens": pa.array(counts.totals, pa.int32()),
        "textTokens": pa.array(counts.text, pa.int32()),
        "imageTokens": pa.array(counts.images, pa.list_(pa.int32())),
        "images": pa.array([r["images"] for r in rows], pa.list_(pa.string())),  # relative to imageRoot
        "conversations": pa.array([r["conversations"] if isinstance(r["conversations"], str)
                                   else json.dumps(r["conversations"]) for r in rows], pa.string()),
    })


def run(args) -> dict[str, Any]:
    shard, shards = shard_index(args.shard, args.shards, "lengths"), args.shards
    started = time.perf_counter()
    source = resolve_source(args.source)
    files = source.files
    tokenizer_dir = _tokenizer_dir(args.tokenizer)
    params = {
        "patchSize": args.patch_size, "mergeSize": args.merge_size, "minPixels": args.min_pixels,
        "maxPixels": args.max_pixels, "shards": shards,
    }
    source_input, root = _source(args.source, files)
    inputs = {"source": source_input,
              "tokenizer": {"uri": args.tokenizer, "digest": lineage.tree_digest(tokenizer_dir)}}  # + config, template
    locations = {"source": args.source, "tokenizer": args.tokenizer, "imageRoot": root}
    reused = _reused(args, shard, params, inputs)
    if reused is not None:
        return reused
    counts = row_counts(files)
    counter = TextCounter(tokenizer_dir)
    rows, bases = read_shard_rows(source, counts, shard, shards)
    if not isinstance(source_input, dict):  # raw tables: references relative to each file's directory
        for row, base in zip(rows, bases):
            row["images"] = [image_refs.relative_to_root(root, base, x) for x in (row.get("images") or [])]
    bases = [root] * len(rows)
    _check_unique([r["id"] for r in rows])
    geometry = ImageGeometry(args.patch_size, args.merge_size, args.min_pixels, args.max_pixels)
    tokens = count_tokens(rows, bases, counter, geometry)
    part = layout.lengths_part(shard)
    digest = write_table(storage.join(args.output, part), _table(rows, tokens))
    stats = {"samples": len(rows), "tokens": int(tokens.totals.sum()),
             "images": int(sum(len(i) for i in tokens.image_uris)), "shard": shard, "shards": shards}
    record = lineage.build_manifest(kind=KIND, step="lengths", inputs=inputs, parameters=params,
                                    files={part: digest}, stats=stats, locations=locations)
    storage.write_json_atomic(storage.join(args.output, layout.lengths_record(shard)), record)
    throughput("lengths", len(rows), tokens.text_bytes, time.perf_counter() - started)
    return {"stats": stats, "output": {"uri": storage.join(args.output, part), "digest": digest}}
