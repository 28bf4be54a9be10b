"""Internal: one data-parallel rank of `run --workers N` (torchrun starts N of them; see workers.py).

Reads the plan its parent wrote (`--plan`), evaluates its share of every task still to do; rank 0
writes the output and leaves the result for the parent, which reports it.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

from ..common.cli import StepFailed
from . import outputs, workers
from .evaluation import evaluate_tasks
from .log import log
from .outputs import Output
from .resolve import resolve_inputs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", required=True, help="the plan `run --workers N` wrote in its work dir")


def _bind_device() -> None:
    """One GPU per rank (models that read LOCAL_RANK themselves agree)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from .run import report  # the same result line as a one-process run

    started = time.monotonic()
    plan = workers.read_plan(args.plan)
    run_args = workers.plan_args(plan)
    rank, world = workers.world()
    _bind_device()
    inputs = resolve_inputs(run_args, plan)
    log(f"rank {rank}/{world}: evaluating {', '.join(plan['todo']) or 'nothing'}")
    out = Output(inputs.output_uri) if rank == 0 else None
    collected = evaluate_tasks(inputs, out, todo=plan["todo"])
    if out is None:
        return None
    doc, out_block = outputs.commit(out, inputs, collected, workers=world)
    timing = collected.throughput(time.monotonic() - started, inputs.model)
    try:
        workers.write_outcome(inputs.work_dir, report(doc, out_block, {**timing, "workers": world}, inputs.model.uri))
    except StepFailed as e:
        workers.write_outcome(inputs.work_dir, e.result, str(e))
    return None
