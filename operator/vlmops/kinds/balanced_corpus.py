"""BalancedCorpus: no inputs; [embed] -> retrieve (sharded) -> balance; concept stats into status."""
from __future__ import annotations

from typing import Any

from .. import metrics
from ..api import balanced_corpus as api
from ..builders import balanced_corpus as builder
from .kind import Kind, set_gauges


def export_metrics(ns: str, name: str, status: dict[str, Any]) -> None:
    stats = status.get("stats") or {}
    set_gauges(stats, ns, name, {"selectedSamples": metrics.BALANCE_SELECTED})
    for when in ("before", "after"):
        side = stats.get(when) or {}
        if side.get("entropyBits") is not None:
            metrics.BALANCE_ENTROPY.labels(ns, name, when).set(side["entropyBits"])
        if side.get("gini") is not None:
            metrics.BALANCE_GINI.labels(ns, name, when).set(side["gini"])


def status_detail(status: dict[str, Any]) -> str:
    if not (stats := status.get("stats")):
        return ""
    covered = (stats.get("after") or {}).get("conceptsCovered")
    return f"samples {stats.get('selectedSamples')}/{stats.get('inputSamples')}, concepts {covered}"


KIND = Kind(api=api.KIND, position=0, build=builder.build, final_step="balance", result_keys=("stats", "output"),
            shard_progress_steps=("retrieve",), export_metrics=export_metrics, status_detail=status_detail,
            sizes=lambda spec: [("spec.shards", spec.shards, "shards"),
                                ("spec.retrieval.gpus x spec.shards", spec.retrieval.gpus * spec.shards, "gpus")],
            gauges=(metrics.BALANCE_SELECTED, metrics.BALANCE_ENTROPY, metrics.BALANCE_GINI))
