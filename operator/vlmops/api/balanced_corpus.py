"""BalancedCorpus (`bc`): concept-balanced sample manifest (MetaCLIP-style resampling)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .kind import AGE, READY, KindAPI, column
from .common import CommonSpec, CommonStatus, Model, OutputSpec, Progress
from .rules import at_most_one


class Embedder(Model):
    model: str = Field(..., description="Local path or URI of a CLIP-family model (no hub downloads).")
    batch_size: int = Field(64, ge=1)
    image_field: str = "images"


class Source(Model):
    uri: str = Field(..., min_length=1, description="Parquet file or prefix, one row per sample.")
    id_field: str = "id"
    embedding_field: str = "embedding"
    embedder: Embedder | None = None


class Concepts(Model):
    uri: str = Field(..., min_length=1)
    text_field: str = "text"
    embedding_field: str = "embedding"


class Retrieval(Model):
    top_k: int = Field(5, ge=1, le=1024)
    index: str = Field("Flat", min_length=1, description="faiss index factory string.")
    nprobe: int | None = Field(None, ge=1)
    min_similarity: float = Field(-1.0, ge=-1.0, le=1.0)
    recall_sample: int = Field(1000, ge=0)
    gpus: int = Field(0, ge=0, le=1, description=(
        "GPUs per retrieve pod: faiss's GPU index on the dataGpu image (results equal CPU exact search: faiss "
        "proposes candidates, the job rescores them); 0: CPU faiss."))
    gpu_float16: bool = Field(False, description="Concept vectors in half precision on the GPU (half the "
                              "memory; the job's rescoring keeps the same top-k except for near-ties).")


_BALANCING_RULES = (at_most_one("threshold", "targetSamples"),)


class Balancing(Model):
    RULES = _BALANCING_RULES

    method: Literal["MetaCLIP", "InverseFrequency"] = "MetaCLIP"
    threshold: float | None = Field(None, gt=0, description="t in p(c) = min(1, t / count(c)).")
    target_samples: int | None = Field(None, ge=1, description="Solve t so the expected kept count is this.")
    seed: int = 0


class BalancedCorpusSpec(CommonSpec):
    source: Source
    concepts: Concepts
    retrieval: Retrieval = Field(default_factory=Retrieval)
    balancing: Balancing = Field(default_factory=Balancing)
    shards: int = Field(1, ge=1, le=10000, description="Parallelism of the retrieval Indexed Job.")
    output: OutputSpec


class BalanceSide(Model):
    concepts_covered: int | None = None
    concepts_covered10: int | None = None
    entropy_bits: float | None = None
    effective_concepts: float | None = None
    gini: float | None = None
    head_share: float | None = None


class BalancedCorpusStats(Model):
    input_samples: int | None = None
    selected_samples: int | None = None
    threshold: float | None = None
    before: BalanceSide | None = None
    after: BalanceSide | None = None
    retrieval_recall: float | None = None


class BalancedCorpusStatus(CommonStatus):
    progress: Progress | None = None
    stats: BalancedCorpusStats | None = None


KIND = KindAPI("BalancedCorpus", "balancedcorpora", "bc", BalancedCorpusSpec, BalancedCorpusStatus, "Ready", [
    READY, column("Samples", ".status.stats.selectedSamples", "integer"),
    column("Concepts", ".status.stats.after.conceptsCovered", "integer"),
    column("Progress", ".status.progress.shardsCompleted", "integer", description="retrieval shards completed"), AGE])
