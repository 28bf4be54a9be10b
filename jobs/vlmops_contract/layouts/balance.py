"""A BalancedCorpus's `--output`: every name the balance job writes, relative to the output.

The job joins them onto `--output` (`join(output, name)`); the manifest's `files` keys are these
relative names. Readers: the pack job reads the `SELECTED` parts the manifest names (with their
digests; never the directory listing: the corpus is what the manifest says).

    embed/shards-<N>/images/part-<i>.parquet     embed shard i of N: samples with embeddings
    embed/shards-<N>/concepts/part-<i>.parquet   embed shard i of N: concept texts with embeddings
    embed/shards-<N>/markers/part-<i>.json       embed shard commit marker (written last)
    index/index.faiss, index/index.json          trained faiss index; index.json written last
    retrieve/shards-<N>/shard-<i>.parquet        retrieve shard i of N: top-k concepts per sample
    retrieve/shards-<N>/shard-<i>.counts.npy     per-concept counts of the shard
    retrieve/shards-<N>/shard-<i>.json           retrieve shard commit marker (written last)
    selected/part-<j>.parquet                    the balanced selection
    concept-counts.parquet, stats.json, plots/*.png
    manifest.json                                written last
"""

from . import MANIFEST  # noqa: F401  (the balance step commits its output with it)

SELECTED = "selected"                       # directory of the selection's parquet parts
CONCEPT_COUNTS = "concept-counts.parquet"   # concept, text, before, after
STATS = "stats.json"                        # full stats + keptByFrequency buckets
PLOT_CONCEPT_FREQUENCY = "plots/concept-frequency.png"
PLOT_KEPT_BY_FREQUENCY = "plots/kept-by-frequency.png"
INDEX_BLOB = "index/index.faiss"            # shared by every retrieve shard (trained indexes only)
INDEX_META = "index/index.json"             # what the index was built from; written after the blob


def _shards_dir(step: str, shards: int) -> str:
    # keyed by the shard count: shards of different counts never mix
    return f"{step}/shards-{shards:05d}"


def embed_dir(shards: int) -> str:
    return _shards_dir("embed", shards)


def embed_images(shards: int) -> str:
    """Directory of the embed step's sample parts (`retrieve --embedded` reads it as its source)."""
    return f"{embed_dir(shards)}/images"


def embed_concepts(shards: int) -> str:
    """Directory of the embed step's concept parts (`retrieve --embedded` reads it as its concepts)."""
    return f"{embed_dir(shards)}/concepts"


def embed_shard(shard: int, shards: int) -> dict[str, str]:
    """Files of embed shard `shard` of `shards`: images, concepts, marker (the commit, last)."""
    part = f"part-{shard:05d}"
    return {"images": f"{embed_images(shards)}/{part}.parquet",
            "concepts": f"{embed_concepts(shards)}/{part}.parquet",
            "marker": f"{embed_dir(shards)}/markers/{part}.json"}


def retrieve_dir(shards: int) -> str:
    return _shards_dir("retrieve", shards)


def retrieve_shard(shard: int, shards: int) -> dict[str, str]:
    """Files of retrieve shard `shard` of `shards`: topk, counts, marker (the commit, last)."""
    base = f"{retrieve_dir(shards)}/shard-{shard:05d}"
    return {"topk": base + ".parquet", "counts": base + ".counts.npy", "marker": base + ".json"}


def selected_part(part: int) -> str:
    return f"{SELECTED}/part-{part:05d}.parquet"
