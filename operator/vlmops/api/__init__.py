"""API types: the single source of truth for the four kinds (CRDs are generated from these)."""
from .balanced_corpus import BalancedCorpusSpec, BalancedCorpusStatus
from .eval_suite import EvalSuiteSpec, EvalSuiteStatus
from .kinds import API_VERSION, KINDS, Kind
from .packed_dataset import PackedDatasetSpec, PackedDatasetStatus
from .training_stage import PRESET_NAMES, VLMTrainingStageSpec, VLMTrainingStageStatus

__all__ = [
    "API_VERSION", "KINDS", "Kind", "PRESET_NAMES",
    "BalancedCorpusSpec", "BalancedCorpusStatus", "PackedDatasetSpec", "PackedDatasetStatus",
    "VLMTrainingStageSpec", "VLMTrainingStageStatus", "EvalSuiteSpec", "EvalSuiteStatus",
]
