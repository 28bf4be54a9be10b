"""Phase 2 of `run`: lmms-eval task by task, each task's output uploaded as soon as it finishes.

One `simple_evaluate` per task (with a fresh model instance) so that one task's crash keeps the
other tasks' results; a model that fails to load fails every task not run yet.
"""
from __future__ import annotations

import os

from vlmops_contract.layouts.evaluate import raw_task_dir

from . import lmms
from .inputs import EvalInputs
from .outputs import Output
from .results import EvalResults

STAGING = "out"  # under the work dir: lmms-eval writes here, then the files are uploaded


def evaluate_tasks(inputs: EvalInputs, out: Output) -> EvalResults:
    collected = EvalResults(inputs.lmms_eval_version, inputs.model.lineage(), inputs.parameters)
    for i, task in enumerate(inputs.tasks):
        try:
            lm = lmms.load_model(inputs)
        except Exception as e:
            collected.model_load_failed(inputs.tasks[i:], e)
            break
        rel_dir = raw_task_dir(task)
        task_dir = os.path.join(inputs.work_dir, STAGING, rel_dir)
        try:
            raw, seconds = lmms.evaluate_task(inputs, lm, task, task_dir)
        except Exception as e:
            collected.task_failed(task, e)
            continue
        finally:
            del lm  # the next task loads its own instance: do not hold two
        lmms.write_raw_output(raw, task_dir)
        collected.add_task(task, raw, seconds)
        out.put_tree(task_dir, rel_dir)
        out.put_progress(collected)
    return collected
