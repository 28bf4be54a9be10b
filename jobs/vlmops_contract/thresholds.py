"""EvalSuite thresholds: `spec.thresholds` maps "task/metric" to a minimum value.

Pure functions (no lmms-eval, no I/O) so the operator can import them to compute
`status.passed` / `status.total` from the normalised results the job reports.

Rules (the status never claims more than was checked):
- A threshold passes iff a result with that task and metric exists, its value is a finite
  number, and value >= minimum.
- A threshold whose metric is missing from the results (task crashed, partial run, typo)
  fails, with the reason in the failing entry.
- `total` is the number of thresholds; with no thresholds, (0, 0, []) is returned.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping


def result_key(task: str, metric: str) -> str:
    """The threshold key of a result: "task/metric" (metric as in results.json, e.g.
    "exact_match" or "exact_match,flexible-extract" when lmms-eval used a non-default filter)."""
    return f"{task}/{metric}"


def split_key(key: str) -> tuple[str, str]:
    """Split "task/metric" at the first "/" (task names never contain "/")."""
    task, sep, metric = key.partition("/")
    if not sep or not task or not metric:
        raise ValueError(f"threshold key {key!r} is not of the form 'task/metric'")
    return task, metric


def results_index(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """{"task/metric": value} from a normalised results list (first occurrence wins)."""
    index: dict[str, Any] = {}
    for r in results:
        index.setdefault(result_key(str(r["task"]), str(r["metric"])), r.get("value"))
    return index


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def evaluate_thresholds(
    results: Iterable[Mapping[str, Any]], thresholds: Mapping[str, float] | None
) -> tuple[int, int, list[str]]:
    """Check `thresholds` against normalised `results` ([{"task","metric","value"}, ...]).

    Returns (passed, total, failing): `failing` holds one human-readable line per failing
    threshold, sorted by key, e.g. "mmmu_val/mmmu_acc: 0.41 < 0.5" or
    "docvqa_val/anls: missing from results".
    """
    if not thresholds:
        return 0, 0, []
    index = results_index(results)
    passed = 0
    failing: list[str] = []
    for key in sorted(thresholds):
        split_key(key)  # validate the form
        minimum = float(thresholds[key])
        if key not in index:
            failing.append(f"{key}: missing from results")
            continue
        value = index[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            failing.append(f"{key}: not a finite number ({value!r})")
            continue
        if float(value) >= minimum:
            passed += 1
        else:
            failing.append(f"{key}: {_fmt(float(value))} < {_fmt(minimum)}")
    return passed, len(thresholds), failing
