"""lmms-eval's results dict -> the normalised form the operator copies into `status.results`.

lmms-eval keys each aggregate as "<metric>,<filter>" (e.g. "exact_match,none") next to
"<metric>_stderr,<filter>" and an "alias". The normalised entry is exactly
{"task", "metric", "value"} (the EvalSuite status schema), where `metric` drops the default
filter: "exact_match" for filter "none", "exact_match,flexible-extract" otherwise. Thresholds are
keyed "task/metric" with the same spelling.

Only finite numbers become results; non-numeric aggregates (e.g. "submission" metrics that
write a file) and NaN are left out and listed under `skipped`. Standard errors and sample
counts go to a per-task side table (`tasks`) so the results list stays status-shaped.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

DEFAULT_FILTER = "none"
_STDERR = "_stderr"


def metric_name(metric: str, filt: str) -> str:
    return metric if filt == DEFAULT_FILTER else f"{metric},{filt}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise one lmms-eval results dict (what `simple_evaluate` returns).

    Returns {"results": [{"task","metric","value"}...] sorted by (task, metric),
             "tasks": {task: {"samples", "originalSamples", "stderr": {metric: x}, "version"}},
             "skipped": ["task/metric: reason", ...]}.
    """
    out: list[dict[str, Any]] = []
    tasks: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    n_samples = raw.get("n-samples") or {}
    versions = raw.get("versions") or {}
    for task, entries in sorted((raw.get("results") or {}).items()):
        if not isinstance(entries, Mapping):
            continue
        info: dict[str, Any] = {}
        stderr: dict[str, float] = {}
        for key, value in entries.items():
            if "," not in key:
                continue  # "alias", "samples", ...
            metric, filt = key.split(",", 1)
            if metric.endswith(_STDERR):
                if _is_number(value):
                    stderr[metric_name(metric[: -len(_STDERR)], filt)] = float(value)
                continue
            if _STDERR + "_" in metric:
                continue  # "_stderr_clt", "_stderr_clustered": other error estimates
            name = metric_name(metric, filt)
            if _is_number(value):
                out.append({"task": task, "metric": name, "value": float(value)})
            else:
                kind = type(value).__name__ if not isinstance(value, float) else "non-finite"
                skipped.append(f"{task}/{name}: {kind} value")
        if stderr:
            info["stderr"] = dict(sorted(stderr.items()))
        ns = n_samples.get(task)
        if isinstance(ns, Mapping):
            if "effective" in ns:
                info["samples"] = int(ns["effective"])
            if "original" in ns:
                info["originalSamples"] = int(ns["original"])
        if task in versions and versions[task] is not None:
            v = versions[task]
            info["version"] = v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else str(v)
        tasks[task] = info
    out.sort(key=lambda r: (r["task"], r["metric"]))
    return {"results": out, "tasks": tasks, "skipped": sorted(skipped)}
