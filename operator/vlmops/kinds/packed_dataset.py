"""PackedDataset: reads a BalancedCorpus (or a URI); lengths -> plan -> write -> finalize; packing stats."""
from __future__ import annotations

from typing import Any

from .. import metrics
from ..api import packed_dataset as api
from ..builders import packed_dataset as builder
from .kind import Kind, Reference


def references(spec: api.PackedDatasetSpec) -> list[Reference]:
    return [("BalancedCorpus", spec.source.balanced_corpus)] if spec.source.balanced_corpus else []


def export_metrics(ns: str, name: str, status: dict[str, Any]) -> None:
    stats = status.get("stats") or {}
    if stats.get("packingEfficiency") is not None:
        metrics.PACKING_EFFICIENCY.labels(ns, name).set(stats["packingEfficiency"])
    if stats.get("compressionRatio") is not None:
        metrics.PACKING_COMPRESSION.labels(ns, name).set(stats["compressionRatio"])


def status_detail(status: dict[str, Any]) -> str:
    stats = status.get("stats") or {}
    if not stats:
        return ""
    return (f"{stats.get('samples')} samples -> {stats.get('sequences')} seqs, "
            f"x{stats.get('compressionRatio', 0):.2f}, eff {stats.get('packingEfficiency', 0):.3f}")


KIND = Kind(
    api=api.KIND, position=1, build=builder.build, final_step="finalize", result_keys=("stats", "output"),
    references=references, shard_progress_steps=("lengths", "write"), export_metrics=export_metrics,
    status_detail=status_detail,
)
