"""Phase 2 of `run`: lmms-eval task by task, each task's output uploaded as soon as it finishes.

One `simple_evaluate` per task (with a fresh model instance) so that one task's crash keeps the
other tasks' results; a model that fails to load fails every task not run yet. Each finished task
is committed on its own (its files, then its `done.json` marker): an evaluation killed midway and
run again with the same parameters and model reuses the finished tasks and evaluates the rest.

Data-parallel ranks (`workers.py`) run the tasks of their plan's `todo` list, all in the same
order; only rank 0 (which gets lmms-eval's gathered results) writes. On a rank, any error ends the
evaluation: the other ranks would wait for it in lmms-eval's collectives.
"""
from __future__ import annotations

import os

from vlmops_contract.layouts.evaluate import raw_task_dir

from . import lmms, workers
from .inputs import EvalInputs
from .outputs import Output
from .results import EvalResults

STAGING = "out"  # under the work dir: lmms-eval writes here, then the files are uploaded


def evaluate_tasks(inputs: EvalInputs, out: Output | None, todo: list[str] | None = None) -> EvalResults:
    """`out` is None on data-parallel ranks other than 0; `todo` (ranks) is the parent's decision of
    which tasks to evaluate, the others being committed already."""
    rank, world = workers.world()
    model = {k: v for k, v in inputs.model.lineage().items() if k != "uri"}  # results.json: no locations
    collected = EvalResults(inputs.lmms_eval_version, model, inputs.parameters)
    crash_after = int(os.environ.get("VLMOPS_EVAL_CRASH_AFTER_TASKS", "0") or 0)  # test hook: a killed pod
    evaluated = 0
    for i, task in enumerate(inputs.tasks):
        if todo is None:
            done = out.committed_task(task, inputs)
        elif task in todo:
            done = None
        else:
            if out is not None:
                done = workers.reuse_committed(out, inputs, task)
            else:
                continue
        if done is not None:
            raw, seconds = done
            collected.add_task(task, raw, seconds, reused=True)
            out.put_progress(collected)
            continue
        try:
            lm = lmms.load_model(inputs)
        except Exception as e:
            if world > 1:
                raise
            collected.model_load_failed(inputs.tasks[i:], e)
            break
        rel_dir = raw_task_dir(task)
        task_dir = os.path.join(inputs.work_dir, STAGING, rel_dir)
        try:
            raw, seconds = lmms.evaluate_task(inputs, lm, task, task_dir)
        except Exception as e:
            if world > 1:
                raise
            collected.task_failed(task, e)
            continue
        finally:
            del lm  # the next task loads its own instance: do not hold two
        evaluated += 1
        if out is not None:
            lmms.write_raw_output(raw, task_dir)
            collected.add_task(task, raw, seconds)
            out.put_tree(task_dir, rel_dir)
            out.commit_task(task, inputs, seconds)
            out.put_progress(collected)
        if crash_after and evaluated == crash_after:
            raise SystemExit(17)
    return collected
