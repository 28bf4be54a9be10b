"""BalancedCorpus -> [embed Indexed Job] -> retrieve Indexed Job -> balance Job."""
from __future__ import annotations

from typing import Any

from ..api.balanced_corpus import BalancedCorpusSpec
from .common import BuildContext, Plan, Step, flag_args, job, py
from .inputs import Inputs


def build(cr: dict[str, Any], spec: BalancedCorpusSpec, inputs: Inputs, ctx: BuildContext) -> Plan:
    out = spec.output.uri
    src = spec.source
    shard_flags = ["--shards", str(spec.shards)]  # --shard comes from JOB_COMPLETION_INDEX
    steps: list[Step] = []
    source_uri = src.uri
    if src.embedder:
        embed = py("balance", "embed", *flag_args([
            ("--source", src.uri), ("--id-field", src.id_field), ("--image-field", src.embedder.image_field),
            ("--embedder", src.embedder.model), ("--batch-size", src.embedder.batch_size),
            ("--concepts", spec.concepts.uri), ("--concept-text-field", spec.concepts.text_field),
        ]), *shard_flags, "--output", out)
        steps.append(Step("embed", job(cr, spec, "embed", embed, ctx, completions=spec.shards)))
    r = spec.retrieval
    retrieve = py("balance", "retrieve", *flag_args([
        ("--source", source_uri), ("--id-field", src.id_field), ("--embedding-field", src.embedding_field),
        ("--concepts", spec.concepts.uri), ("--concept-text-field", spec.concepts.text_field),
        ("--concept-embedding-field", spec.concepts.embedding_field),
        ("--top-k", r.top_k), ("--index", r.index), ("--nprobe", r.nprobe),
        ("--min-similarity", r.min_similarity), ("--recall-sample", r.recall_sample),
        # a GPU pod must search on it: a CPU-only image fails loudly (exit 2) instead of falling back
        ("--device", "gpu" if r.gpus else None), ("--gpu-float16", r.gpus > 0 and r.gpu_float16),
    ]), *shard_flags, "--output", out)
    if src.embedder:
        retrieve += ["--embedded"]  # read the embed step's output instead of source embeddings
    steps.append(Step("retrieve", job(cr, spec, "retrieve", retrieve, ctx, completions=spec.shards,
                                      image_key="dataGpu" if r.gpus else "data",
                                      resources={"limits": {"nvidia.com/gpu": str(r.gpus)}} if r.gpus else None)))
    b = spec.balancing
    balance = py("balance", "balance", *flag_args([
        ("--method", b.method), ("--threshold", b.threshold), ("--target-samples", b.target_samples),
        ("--seed", b.seed),
    ]), *shard_flags, "--output", out)
    steps.append(Step("balance", job(cr, spec, "balance", balance, ctx)))
    return Plan(steps=steps, inputs={"source": src.uri, "concepts": spec.concepts.uri})
