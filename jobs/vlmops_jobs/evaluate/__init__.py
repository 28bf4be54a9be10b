"""EvalSuite job: lmms-eval (pinned) against one checkpoint, normalised results, comparisons.

- `python -m vlmops_jobs.evaluate run --model-uri URI --tasks a,b --output URI ...` (see `run.py`)
- `python -m vlmops_jobs.evaluate compare A [B] [--reference llava-ov-1.5-8b]` (see `compare.py`)
- `vlmops_contract.thresholds.evaluate_thresholds` for the operator (no lmms-eval import).

Importing this package does not import lmms-eval or torch; `run` imports them lazily.
"""
