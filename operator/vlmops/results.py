"""Turning job results (termination messages) into status fields and metrics. Pure functions."""
from __future__ import annotations

from typing import Any

from vlmops_contract.result import parse_result
from vlmops_contract.thresholds import evaluate_thresholds

from . import metrics

# Which result keys each kind copies into its status (the jobs' result JSON contract).
_COPY = {
    "BalancedCorpus": ("stats", "output"),
    "PackedDataset": ("stats", "output"),
    "VLMTrainingStage": ("progress", "checkpoint", "output", "hf"),
    "EvalSuite": ("results", "lmmsEvalVersion", "partial", "output"),
}


def from_pods(pods: list[dict[str, Any]], container: str | None = None) -> dict[str, Any] | None:
    """The result of the first pod (by completion index, then name) whose container reported one;
    a sharded step's per-shard results are attached under "shards"."""
    found: list[tuple[int, str, dict[str, Any]]] = []
    for pod in pods:
        ann = pod["metadata"].get("annotations") or {}
        index = int(ann.get("batch.kubernetes.io/job-completion-index", 0) or 0)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if container and cs.get("name") != container:
                continue
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            res = parse_result((term or {}).get("message") or "")
            if res is not None:
                found.append((index, pod["metadata"]["name"], res))
    if not found:
        return None
    found.sort(key=lambda t: (t[0], t[1]))
    first = dict(found[0][2])
    if len(found) > 1:
        first["shards"] = [r for _, _, r in found]
    return first


def failure_line(pods: list[dict[str, Any]]) -> str | None:
    """The last line a failed container left in its termination message (with
    FallbackToLogsOnError, the log tail: a job's bad-input exit prints `error: ...` last)."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term and term.get("exitCode") not in (0, None):
                lines = [ln.strip() for ln in (term.get("message") or "").splitlines() if ln.strip()]
                if lines:
                    return lines[-1][:512]
    return None


def apply(kind: str, spec: Any, status: dict[str, Any], step: str, res: dict[str, Any] | None) -> None:
    if not res:
        return
    for key in _COPY[kind]:
        if key in res and res[key] is not None:
            status[key] = res[key]


def finish(kind: str, spec: Any, status: dict[str, Any]) -> None:
    """Fields derived once every step succeeded."""
    if kind == "EvalSuite":
        passed, total, failing = evaluate_thresholds(status.get("results") or [], spec.thresholds)
        status["passed"], status["total"] = passed, total
        status["failing"] = failing or None


_PHASES: dict[tuple[str, str, str], str] = {}  # (kind, namespace, name) -> phase, for vlmops_resources


def forget(kind: str, namespace: str, name: str) -> None:
    """A deleted CR no longer counts in vlmops_resources."""
    if _PHASES.pop((kind, namespace, name), None) is not None:
        _set_phase_gauges(kind)


def _set_phase_gauges(kind: str) -> None:
    counts: dict[str, int] = {}
    for (k, _, _), phase in _PHASES.items():
        if k == kind:
            counts[phase] = counts.get(phase, 0) + 1
    for phase in ("Pending", "Running", "Ready", "Succeeded", "Failed"):
        metrics.RESOURCES.labels(kind, phase).set(counts.get(phase, 0))


def export_metrics(obj: dict[str, Any], status: dict[str, Any]) -> None:
    """Mirror what dashboards need from status into gauges (no writes, no storage access)."""
    ns, name, kind = obj["metadata"]["namespace"], obj["metadata"]["name"], obj["kind"]
    _PHASES[(kind, ns, name)] = status.get("phase") or "Pending"
    _set_phase_gauges(kind)
    stats = status.get("stats") or {}
    if kind == "PackedDataset" and stats:
        if stats.get("packingEfficiency") is not None:
            metrics.PACKING_EFFICIENCY.labels(ns, name).set(stats["packingEfficiency"])
        if stats.get("compressionRatio") is not None:
            metrics.PACKING_COMPRESSION.labels(ns, name).set(stats["compressionRatio"])
    elif kind == "BalancedCorpus" and stats:
        if stats.get("selectedSamples") is not None:
            metrics.BALANCE_SELECTED.labels(ns, name).set(stats["selectedSamples"])
        for when in ("before", "after"):
            side = stats.get(when) or {}
            if side.get("entropyBits") is not None:
                metrics.BALANCE_ENTROPY.labels(ns, name, when).set(side["entropyBits"])
            if side.get("gini") is not None:
                metrics.BALANCE_GINI.labels(ns, name, when).set(side["gini"])
    elif kind == "VLMTrainingStage":
        p = status.get("progress") or {}
        for gauge, key in ((metrics.TRAIN_STEP, "step"), (metrics.TRAIN_TOKENS, "tokensPerSecond"),
                           (metrics.TRAIN_MFU, "mfu")):
            if p.get(key) is not None:
                gauge.labels(ns, name).set(p[key])
    elif kind == "EvalSuite":
        for r in status.get("results") or []:
            try:
                metrics.EVAL_SCORE.labels(ns, name, r["task"], r["metric"]).set(float(r["value"]))
            except (TypeError, ValueError, KeyError):
                continue
        if status.get("passed") is not None:
            metrics.EVAL_PASSED.labels(ns, name).set(status["passed"])
