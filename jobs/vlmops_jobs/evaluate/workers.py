"""Data-parallel evaluation: `run --workers N` evaluates every task over N processes in this pod.

The work is lmms-eval's own: under torchrun each rank builds the requests of its share of every
task's documents (`build_all_requests(rank, world_size)`), and rank 0 gathers the per-document
scores and aggregates them (the `torchrun` executor backend: a gloo group on CPU, the model's
NCCL group on GPU, one GPU per rank). What this module adds:

- `launch` (the parent, after every input was checked once): the plan a worker needs, written to
  the work dir (the resolved model and include path, so N ranks neither copy nor hash the
  checkpoint again, and the tasks still to evaluate, decided once so every rank runs the same
  sequence of collectives), then `torch.distributed.run` with N local ranks, then the outcome
  rank 0 left behind, reported as this step's result line.
- the `worker` step (`run_rank`): one rank; only rank 0 writes the output, with the same per-task
  commits as a single process. Scores do not depend on N beyond floating-point summation order
  (rank 0 aggregates the documents rank by rank): means of exact values (accuracies, counts) are
  equal bit for bit, and samples.jsonl is written in document order whatever N is.

A failure on any rank ends every rank (torchrun takes the group down): the tasks committed so far
are kept and a rerun evaluates the rest; the step exits 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

from vlmops_contract.layouts.evaluate import raw_task_dir

from ..common import storage
from ..common.cli import StepFailed
from .inputs import EvalInputs
from .log import log
from .model import ResolvedModel
from .outputs import Output

PLAN = "workers-plan.json"       # under the work dir: what every rank evaluates
OUTCOME = "workers-outcome.json"  # under the work dir: rank 0's result line content (or its error)


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def launch(args: argparse.Namespace, inputs: EvalInputs) -> dict[str, Any]:
    todo = [t for t in inputs.tasks if Output(inputs.output_uri).committed_task(t, inputs) is None]
    plan = {
        "args": vars(args),
        "model": dataclasses.asdict(inputs.model),
        "include": {"dir": inputs.include_dir, "input": inputs.include_input},
        "todo": todo,
    }
    plan_path = os.path.join(inputs.work_dir, PLAN)
    outcome_path = os.path.join(inputs.work_dir, OUTCOME)
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    if os.path.exists(outcome_path):
        os.unlink(outcome_path)
    reused = len(inputs.tasks) - len(todo)
    log(f"{args.workers} data-parallel workers: evaluating {', '.join(todo) or 'nothing'}"
        + (f" ({reused} task(s) committed by an earlier run)" if reused else ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc-per-node", str(args.workers), "-m", "vlmops_jobs.evaluate", "worker", "--plan", plan_path]
    proc = subprocess.Popen(cmd, stdout=sys.stdout.fileno(), stderr=sys.stderr.fileno())
    try:
        rc = proc.wait()
    except BaseException:  # interrupted: the ranks go down with us
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    try:
        with open(outcome_path) as f:
            outcome = json.load(f)
    except (OSError, ValueError):
        outcome = None
    if rc != 0 or outcome is None:
        raise StepFailed(f"evaluation workers failed (torchrun exit {rc}; see the ranks' log above); "
                         f"finished tasks are committed under {inputs.output_uri} and a rerun evaluates the rest")
    if outcome.get("error"):
        raise StepFailed(outcome["error"], outcome.get("result"))
    return outcome["result"]


def read_plan(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def plan_args(plan: dict[str, Any]) -> argparse.Namespace:
    return argparse.Namespace(**plan["args"])


def plan_model(plan: dict[str, Any]) -> ResolvedModel:
    return ResolvedModel(**plan["model"])


def write_outcome(work_dir: str, result: dict[str, Any] | None, error: str | None = None) -> None:
    tmp = os.path.join(work_dir, OUTCOME + ".part")
    with open(tmp, "w") as f:
        json.dump({"result": result, "error": error}, f)
    os.replace(tmp, os.path.join(work_dir, OUTCOME))


def reuse_committed(out: Output, inputs: EvalInputs, task: str):
    """Rank 0 takes a task the parent found committed; it must still be (nothing else writes here)."""
    done = out.committed_task(task, inputs)
    if done is None:
        raise RuntimeError(f"task {task}: its committed output under "
                           f"{storage.join(inputs.output_uri, raw_task_dir(task))} changed during this run")
    return done
