"""EvalSuite job: lmms-eval (pinned) against one checkpoint, normalised results, comparisons.

- `python -m vlmops_jobs.evaluate run --model-uri URI --tasks a,b --output URI ...` (`run.py`)
- `python -m vlmops_jobs.evaluate worker --plan P`: one rank of `run --workers N` (`worker.py`)
- `python -m vlmops_jobs.evaluate compare A [B] [--reference llava-ov-1.5-8b]` (`compare.py`)
- `vlmops_contract.thresholds.evaluate_thresholds` for the operator (no lmms-eval import).

Importing this package (or parsing a step's flags) does not import lmms-eval or torch: the phases
of `run` import them when they get there.
"""
from ..common.cli import Job

JOB = Job(
    "vlmops_jobs.evaluate",
    ("run", "compare", "worker"),
    description="run: evaluate one checkpoint with lmms-eval (normalised results, manifest last); "
                "compare: two evaluations side by side, optionally against published reference numbers; "
                "worker: one data-parallel rank of `run --workers N` (started by run, not by hand).",
)
