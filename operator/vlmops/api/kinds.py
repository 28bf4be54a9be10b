"""The four kinds: names, spec/status types, printer columns. CRDs are generated from this."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import API_VERSION  # noqa: F401  (re-exported: vlmops.api.API_VERSION)
from .balanced_corpus import BalancedCorpusSpec, BalancedCorpusStatus
from .common import CommonStatus, Model
from .eval_suite import EvalSuiteSpec, EvalSuiteStatus
from .packed_dataset import PackedDatasetSpec, PackedDatasetStatus
from .training_stage import VLMTrainingStageSpec, VLMTrainingStageStatus


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short: str
    spec: type[Model]
    status: type[CommonStatus]
    done_condition: str  # "Ready" for datasets, "Succeeded" for stages and evals
    columns: list[dict[str, Any]] = field(default_factory=list)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def done_phase(self) -> str:
        return "Ready" if self.done_condition == "Ready" else "Succeeded"


def _col(name: str, path: str, type_: str = "string", **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path, **kw}


_AGE = _col("Age", ".metadata.creationTimestamp", "date")
_READY = _col("Ready", '.status.conditions[?(@.type=="Ready")].status')
_PHASE = _col("Phase", ".status.phase")

KINDS: dict[str, Kind] = {
    k.kind: k
    for k in [
        Kind("BalancedCorpus", "balancedcorpora", "bc", BalancedCorpusSpec, BalancedCorpusStatus, "Ready", [
            _READY,
            _col("Samples", ".status.stats.selectedSamples", "integer"),
            _col("Concepts", ".status.stats.after.conceptsCovered", "integer"),
            _col("Progress", ".status.progress.shardsCompleted", "integer",
                 description="retrieval shards completed"),
            _AGE,
        ]),
        Kind("PackedDataset", "packeddatasets", "pds", PackedDatasetSpec, PackedDatasetStatus, "Ready", [
            _READY,
            _col("Samples", ".status.stats.samples", "integer"),
            _col("Sequences", ".status.stats.sequences", "integer"),
            _col("Compression", ".status.stats.compressionRatio", "number"),
            _col("Efficiency", ".status.stats.packingEfficiency", "number"),
            _AGE,
        ]),
        Kind("VLMTrainingStage", "vlmtrainingstages", "vts", VLMTrainingStageSpec, VLMTrainingStageStatus,
             "Succeeded", [
            _PHASE,
            _col("Step", ".status.progress.step", "integer"),
            _col("Tokens/s", ".status.progress.tokensPerSecond", "number"),
            _col("Nodes", ".spec.nodes", "integer"),
            _col("Queue", ".spec.scheduling.queueName"),
            _AGE,
        ]),
        Kind("EvalSuite", "evalsuites", "evs", EvalSuiteSpec, EvalSuiteStatus, "Succeeded", [
            _PHASE,
            _col("Passed", ".status.passed", "integer"),
            _col("Total", ".status.total", "integer"),
            _AGE,
        ]),
    ]
}
