"""PackedDataset -> lengths Indexed Job -> plan Job -> write Indexed Job (+ finalize)."""
from __future__ import annotations

from typing import Any

from ..api import balanced_corpus
from ..api.packed_dataset import PackedDatasetSpec
from .common import BuildContext, Plan, Step, flag_args, job, py
from .inputs import Inputs, output_uri, resolve


def build(cr: dict[str, Any], spec: PackedDatasetSpec, inputs: Inputs, ctx: BuildContext) -> Plan:
    waiting: list[str] = []
    if spec.source.balanced_corpus:
        bc = resolve(inputs, balanced_corpus.KIND, spec.source.balanced_corpus, waiting)
        if bc is None:
            return Plan(waiting_for=waiting)
        source = output_uri(bc)
    else:
        source = spec.source.uri
    out = spec.output.uri
    img = spec.image
    shards = ["--shards", str(spec.shards)]
    lengths = py("pack", "lengths", *flag_args([
        ("--source", source), ("--tokenizer", spec.tokenizer), ("--patch-size", img.patch_size),
        ("--merge-size", img.merge_size), ("--min-pixels", img.min_pixels), ("--max-pixels", img.max_pixels),
    ]), *shards, "--output", out)
    plan = py("pack", "plan", *flag_args([
        ("--sequence-length", spec.sequence_length), ("--algorithm", spec.algorithm),
        ("--truncate", spec.too_long == "Truncate"),
    ]), *shards, "--output", out)
    write = py("pack", "write", *flag_args([
        ("--shard-size-samples", spec.shard_size.samples), ("--format", spec.format),
    ]), *shards, "--output", out)
    finalize = py("pack", "finalize", *flag_args([("--format", spec.format)]), *shards, "--output", out)
    return Plan(
        steps=[
            Step("lengths", job(cr, spec, "lengths", lengths, ctx, completions=spec.shards)),
            Step("plan", job(cr, spec, "plan", plan, ctx)),
            Step("write", job(cr, spec, "write", write, ctx, completions=spec.shards)),
            Step("finalize", job(cr, spec, "finalize", finalize, ctx)),
        ],
        inputs={"source": source},
    )
