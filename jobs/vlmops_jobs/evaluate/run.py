"""Evaluate one checkpoint with lmms-eval (the library, pinned): normalised results, manifest last.

Phases:
1. `resolve.resolve_inputs`: version pin (`--expected-version`), flags, `--include-path` fetched to
   local disk, task and lmms-eval model names, the checkpoint resolved (copy, digest, verify).
   All of that is input checking: on failure, exit 2 with one `error:` line, nothing written.
2. A complete output for the same parameters and model digest is reported again (retried pod).
3. `evaluation.evaluate_tasks` (or, `--workers N`, the same over N data-parallel ranks: `workers.py`): `simple_evaluate` once per task so one task's crash keeps the
   others; after each task its raw lmms-eval output goes to `<output>/lmms-eval/<task>/` and the
   normalised `<output>/results.json` is rewritten.
4. `outputs.commit`: the final results.json, `manifest.json` last; then the result line. If any
   task failed (or the model failed to load), the results are kept with `"partial": true` and an
   `errors` list, the result line is still printed, and the job exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

from ..common.cli import StepFailed
from . import outputs, workers
from .evaluation import evaluate_tasks
from .resolve import resolve_inputs
from .log import log
from .results import result_from_doc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-uri", required=True,
                   help="HF checkpoint directory: s3://, file://, a path, or a cached HF repo id")
    p.add_argument("--model-digest", default=None, help="expected sha256:... (tree or manifest digest)")
    p.add_argument("--lmms-eval-model", default=None,
                   help="lmms-eval --model name (default llava_onevision1_5; vllm with --backend vllm)")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                   help="hf: the lmms-eval model on transformers; vllm: lmms-eval's vllm model (GPU)")
    p.add_argument("--gpus", type=int, default=0,
                   help="GPUs of the pod (backend vllm: tensor parallel size = gpus / workers)")
    p.add_argument("--model-args", default="", help="lmms-eval model_args without pretrained: k=v,...")
    p.add_argument("--tasks", required=True, help="comma-separated lmms-eval task or group names")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--limit", default=None, help="examples per task (count, or a fraction < 1)")
    p.add_argument("--include-path", default=None, help="URI of a directory of custom task YAMLs")
    p.add_argument("--output", required=True, help="output URI (s3://, file://, path)")
    p.add_argument("--expected-version", default=None, help="pinned lmms-eval version, e.g. 0.7.3")
    p.add_argument("--work-dir", default=os.environ.get("VLMOPS_WORK_DIR"),
                   help="local scratch for the model copy and lmms-eval files (default: a temp dir)")
    p.add_argument("--verbosity", default="INFO", help="lmms-eval verbosity")
    p.add_argument("--workers", type=int, default=1,
                   help="data-parallel processes in this pod (torchrun; one GPU each on GPU): "
                        "each evaluates its share of every task's documents")
    p.add_argument("--no-log-samples", dest="log_samples", action="store_false",
                   help="do not write per-sample outputs")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.work_dir:
        return evaluate_checkpoint(args)
    with tempfile.TemporaryDirectory(prefix="vlmops-eval-") as tmp:  # model copy and staging go away
        args.work_dir = tmp
        return evaluate_checkpoint(args)


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    inputs = resolve_inputs(args)
    committed = outputs.committed_results(inputs)
    if committed is not None:
        log(f"{inputs.output_uri} already holds complete results for these inputs: reporting them again")
        doc, out_block = committed
        return report(doc, out_block, {"seconds": round(time.monotonic() - started, 3), "reused": True},
                      inputs.model.uri)
    if args.workers > 1 and args.backend == "hf":  # vLLM runs its data-parallel replicas itself
        return workers.launch(args, inputs)
    out = outputs.Output(inputs.output_uri)
    collected = evaluate_tasks(inputs, out)
    doc, out_block = outputs.commit(out, inputs, collected)
    return report(doc, out_block, collected.throughput(time.monotonic() - started, inputs.model), inputs.model.uri)


def report(doc: dict[str, Any], out_block: dict[str, str], timing: dict[str, Any],
           model_uri: str | None = None) -> dict[str, Any]:
    """The result line's content; a partial evaluation fails the step (exit 1) with it."""
    log(f"done: {len(doc['results'])} metrics, partial={doc['partial']}, {json.dumps(timing, sort_keys=True)}")
    result = result_from_doc(doc, out_block, timing, model_uri)
    if doc["partial"]:
        failed = ", ".join(sorted({e["task"] for e in doc.get("errors", [])}))
        raise StepFailed(f"lmmsEval tasks: {failed} failed; partial results kept in {out_block['uri']}", result)
    return result
