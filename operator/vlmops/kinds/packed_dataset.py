"""PackedDataset: reads a BalancedCorpus (or a URI); lengths -> plan -> write -> finalize; packing stats."""
from __future__ import annotations

from typing import Any

from .. import metrics
from ..api import packed_dataset as api
from ..builders import packed_dataset as builder
from .kind import Kind, Reference, set_gauges


def references(spec: api.PackedDatasetSpec) -> list[Reference]:
    return [("BalancedCorpus", spec.source.balanced_corpus)] if spec.source.balanced_corpus else []


def export_metrics(ns: str, name: str, status: dict[str, Any]) -> None:
    set_gauges(status.get("stats") or {}, ns, name, {"packingEfficiency": metrics.PACKING_EFFICIENCY,
                                                      "compressionRatio": metrics.PACKING_COMPRESSION,
                                                      "lowerBoundSequences": metrics.PACKING_LOWER_BOUND,
                                                      "gapToLowerBound": metrics.PACKING_GAP})


def status_detail(status: dict[str, Any]) -> str:
    s = status.get("stats")
    if not s:
        return ""
    gap = f", {100 * s['gapToLowerBound']:.3f}% over the bound" if s.get("gapToLowerBound") is not None else ""
    return (f"{s.get('samples')} samples -> {s.get('sequences')} seqs, x{s.get('compressionRatio', 0):.2f}, "
            f"eff {s.get('packingEfficiency', 0):.3f}{gap}")


KIND = Kind(
    api=api.KIND, position=1, build=builder.build, final_step="finalize", result_keys=("stats", "output"),
    references=references, shard_progress_steps=("lengths", "write"), export_metrics=export_metrics,
    status_detail=status_detail, sizes=lambda spec: [("spec.shards", spec.shards, "shards")],
    gauges=(metrics.PACKING_EFFICIENCY, metrics.PACKING_COMPRESSION, metrics.PACKING_LOWER_BOUND, metrics.PACKING_GAP),
)
