"""PackedDataset (`pds`): samples packed offline into fixed-length sequences."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .kind import AGE, READY, KindAPI, column
from .common import CommonSpec, CommonStatus, Model, Name, OutputSpec, Progress
from .rules import exactly_one, rule

_SOURCE_RULES = (exactly_one("balancedCorpus", "uri"),)


class PackSource(Model):
    RULES = _SOURCE_RULES

    balanced_corpus: Name | None = Field(None, description="A BalancedCorpus in this namespace.")
    uri: str | None = Field(None, min_length=1, description="Parquet sample table (file or prefix).")
    format: Literal["parquet"] = "parquet"


_IMAGE_RULES = (rule("self.minPixels <= self.maxPixels", "minPixels must not exceed maxPixels",
                     lambda s: s.min_pixels <= s.max_pixels),)


class ImageTokens(Model):
    RULES = _IMAGE_RULES

    patch_size: int = Field(14, ge=1)
    merge_size: int = Field(2, ge=1)
    min_pixels: int = Field(3136, ge=1)
    max_pixels: int = Field(2560000, ge=1)


class ShardSize(Model):
    samples: int = Field(10000, ge=1)


class PackedDatasetSpec(CommonSpec):
    source: PackSource
    sequence_length: int = Field(8192, ge=16, le=1048576)
    tokenizer: str = Field(..., min_length=1, description="Tokenizer path (local dir or URI).")
    # api.md gives PackedDataset's `image` to the image-token settings; its container image
    # override is `spec.pod.image`.
    image: ImageTokens = Field(default_factory=ImageTokens)  # type: ignore[assignment]
    algorithm: Literal["BestFitDecreasing", "FirstFitDecreasing"] = "BestFitDecreasing"
    too_long: Literal["Drop", "Truncate"] = Field("Drop", description="Samples longer than sequenceLength.")
    shard_size: ShardSize = Field(default_factory=ShardSize)
    format: Literal["energon", "webdataset"] = "energon"
    shards: int = Field(1, ge=1, le=10000, description="Parallelism of the length and write passes.")
    output: OutputSpec


class PackingStats(Model):
    samples: int | None = None
    sequences: int | None = None
    lower_bound_sequences: int | None = Field(None, description="Best lower bound on the sequence count.")
    lower_bound_method: str | None = Field(None, description="The bound that gave it: volume | martello-toth | "
                                                              "cardinality.")
    gap_to_lower_bound: float | None = Field(None, description="sequences / lowerBoundSequences - 1.")
    bfd_sequences: int | None = Field(None, description="Sequences of plain best-fit-decreasing (never fewer).")
    plan_pass: str | None = Field(None, description="The plan kept: bfd | countmax | closing | completion.")
    compression_ratio: float | None = None
    packing_efficiency: float | None = None
    tokens: int | None = None
    padding_tokens: int | None = None
    dropped_too_long: int | None = None
    dropped_empty: int | None = Field(None, description="Samples of zero tokens (not packed).")
    truncated: int | None = Field(None, description="Samples cut to sequenceLength (tooLong: Truncate).")
    shards: int | None = Field(None, description="Tar files written.")


class PackedDatasetStatus(CommonStatus):
    progress: Progress | None = None
    stats: PackingStats | None = None


KIND = KindAPI("PackedDataset", "packeddatasets", "pds", PackedDatasetSpec, PackedDatasetStatus, "Ready", [
    READY, column("Samples", ".status.stats.samples", "integer"),
    column("Sequences", ".status.stats.sequences", "integer"),
    column("Compression", ".status.stats.compressionRatio", "number"),
    column("Efficiency", ".status.stats.packingEfficiency", "number"), AGE])
