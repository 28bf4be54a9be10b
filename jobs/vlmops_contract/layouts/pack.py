"""A PackedDataset's `--output` (the CR's `output.uri`): what the pack job's steps write there.

    lengths/part-00000.parquet   id, tokens, textTokens, imageTokens, images (absolute), conversations
    lengths/part-00000.json      per-shard commit record (digest, rows, parameters, input digests)
    plan/plan.parquet            sequence, part, row, tokens (rows grouped by sequence, in order)
    plan/manifest.json           plan commit record (stats, parameters, digests)
    plan/stats.png               length histogram (capacity marked) + fill distribution
    shards/shard-000000.tar      WebDataset tar, one entry per sequence (key seq%09d: json, img<j>.<ext>)
    shards/shard-000000.tar.idx  Energon tar index (uint64 offsets of each entry + end)
    shards/shard-000000.json     per-tar commit record
    .nv-meta/dataset.yaml, split.yaml, .info.yaml, .info.json    (format energon)
    manifest.json                written last (`MANIFEST`)

All names are relative to the output; `join(output, name)` makes the URI.
"""
from . import MANIFEST as MANIFEST  # the dataset's commit marker, the same name every job uses

LENGTHS_DIR = "lengths"
PLAN = "plan/plan.parquet"
PLAN_MANIFEST = "plan/manifest.json"
PLAN_STATS_PNG = "plan/stats.png"
SHARDS_DIR = "shards"
SHARD_TAR_GLOB = "shard-*.tar"  # the tars under SHARDS_DIR, for readers that list them

ENERGON_DIR = ".nv-meta"  # Megatron-Energon's dataset metadata, next to the shards
ENERGON_DATASET, ENERGON_SPLIT, ENERGON_INFO_YAML, ENERGON_INFO_JSON = (
    f"{ENERGON_DIR}/{name}" for name in ("dataset.yaml", "split.yaml", ".info.yaml", ".info.json"))

# Inside a tar: one entry per sequence, key `sequence_key(q)`, members `json` and `img<j>.<ext>`.
SEQUENCE_JSON = "json"
IMAGE_PREFIX = "img"


def lengths_part(shard: int) -> str:
    return f"{LENGTHS_DIR}/part-{shard:05d}.parquet"


def lengths_record(shard: int) -> str:
    return f"{LENGTHS_DIR}/part-{shard:05d}.json"


def is_lengths_record(name: str) -> bool:
    """Whether a file name (its last path component) is a lengths shard's commit record."""
    return name.startswith("part-") and name.endswith(".json")


def shard_tar(index: int) -> str:
    return f"{SHARDS_DIR}/shard-{index:06d}.tar"


def shard_tar_index(index: int) -> str:
    return shard_tar(index) + ".idx"


def shard_record(index: int) -> str:
    return f"{SHARDS_DIR}/shard-{index:06d}.json"


def sequence_key(sequence: int) -> str:
    return f"seq{sequence:09d}"


def image_member(number: int, ext: str) -> str:
    return f"{IMAGE_PREFIX}{number}.{ext}"
