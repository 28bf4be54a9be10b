"""The concept index (faiss, inner product over L2-normalised vectors) and the top-k search.

`Flat` is exact and built in memory. An index that needs training is built once, stored under
`<output>/index/` (the blob, then `index.json` naming the concept digests it was built from) and
reused by every shard (and by later runs) built from the same concepts.

The search runs on a GPU when faiss has GPU support (faiss-gpu) and sees one (`--device auto`),
on the CPU otherwise. The index is built (or loaded) on the CPU and copied to the GPU; either way
`search` rescores the candidates on the CPU, so both devices give the same top-k.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from vlmops_contract.layouts import balance as layout
from vlmops_jobs.common import storage
from vlmops_jobs.common.result import JobError

from .shards import log

SEARCH_BATCH = 16384  # queries per faiss call (the GPU index pages these through its temp memory)
RESCORE_ELEMENTS = 8 << 20  # floats per rescoring block (32 MiB)
GPU_MAX_K = 2048  # faiss's GPU_MAX_SELECTION_K: the largest k and nprobe a GPU index takes
DEVICES = ("auto", "cpu", "gpu")


def _combined_digest(inputs: list[dict[str, str]]) -> str:
    return storage.sha256_bytes(storage.canonical_json(inputs))


def get_index(output: str, factory: str, concepts: np.ndarray, concept_inputs: list[dict[str, str]],
              nprobe: int | None):
    """Flat: built in memory (no training). Otherwise load the stored trained index if it was
    built from these exact concepts, else train+add it here and store it for the other shards."""
    import faiss

    d = concepts.shape[1]
    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except Exception as e:
        raise JobError(f"retrieval index: {factory!r} is not a valid faiss factory string: {e}") from e
    info: dict[str, Any] = {"factory": factory, "approximate": not _is_exact(index)}
    if index.is_trained and not info["approximate"]:
        index.add(concepts)
        return _set_nprobe(index, nprobe), info
    blob_uri = storage.join(output, layout.INDEX_BLOB)
    want = {"factory": factory, "metric": "IP", "dim": d, "concepts": int(len(concepts)),
            "conceptsDigest": _combined_digest(concept_inputs)}
    index, digest = _stored_or_built(index, output, want, concepts)
    info.update(uri=blob_uri, digest=digest)
    return _set_nprobe(index, nprobe), info


def _stored_or_built(index, output: str, want: dict[str, Any], concepts: np.ndarray):
    """(index, digest): the stored index built from `want`, else this one trained, added and stored."""
    import faiss

    meta_uri, blob_uri = storage.join(output, layout.INDEX_META), storage.join(output, layout.INDEX_BLOB)
    factory = want["factory"]
    loaded = _try_load_index(meta_uri, blob_uri, want)
    if loaded is not None:
        log(f"index: reusing stored {factory} ({loaded[1][:19]})")
        return loaded
    t0 = time.perf_counter()
    if not index.is_trained:
        index.train(concepts)
    index.add(concepts)
    log(f"index: built {factory} over {len(concepts)} concepts in {time.perf_counter() - t0:.2f}s")
    # another shard may have committed meanwhile: prefer the stored one so all shards agree
    again = _try_load_index(meta_uri, blob_uri, want)
    if again is not None:
        return again
    digest = storage.write_bytes_atomic(blob_uri, faiss.serialize_index(index).tobytes())
    storage.write_json_atomic(meta_uri, dict(want, indexDigest=digest))
    return index, digest


def _try_load_index(meta_uri: str, blob_uri: str, want: dict[str, Any]):
    import faiss

    if not storage.exists(meta_uri):
        return None
    meta = storage.read_json(meta_uri)
    if {k: meta.get(k) for k in want} != want or not storage.exists(blob_uri):
        return None
    blob = storage.read_bytes(blob_uri)
    digest = storage.sha256_bytes(blob)
    if digest != meta.get("indexDigest"):
        return None
    return faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8)), digest


def _is_exact(index) -> bool:
    import faiss

    return isinstance(index, (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexFlatL2))


def _set_nprobe(index, nprobe: int | None):
    import faiss

    if nprobe:
        try:
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", int(nprobe))
        except RuntimeError:
            pass  # the index has no nprobe (e.g. Flat, HNSW)
    return index


def candidates(k: int, n_concepts: int) -> int:
    """How many candidates faiss proposes per query: k plus a margin, rescored by `search`."""
    return min(n_concepts, k + max(k, 4))


def gpu_unavailable() -> str | None:
    """Why faiss cannot search on a GPU in this process, or None when it can."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):
        return "this faiss build has no GPU support (faiss-cpu; the data image built with FAISS=gpu has faiss-gpu)"
    if faiss.get_num_gpus() < 1:
        return "faiss sees no GPU (no nvidia.com/gpu resource on the pod, or CUDA_VISIBLE_DEVICES hides it)"
    return None


def choose_device(requested: str, k: int, n_concepts: int, nprobe: int | None) -> str:
    """'gpu' or 'cpu'. `auto` takes the GPU when faiss can search this on one; `gpu` insists (a
    JobError says why it cannot); `cpu` never asks."""
    if requested == "cpu":
        return "cpu"
    why = gpu_unavailable()
    if why is None and candidates(k, n_concepts) > GPU_MAX_K:
        why = (f"top-k {k} searches {candidates(k, n_concepts)} candidates, more than the {GPU_MAX_K} "
               "a faiss GPU index returns")
    if why is None and nprobe and nprobe > GPU_MAX_K:
        why = f"nprobe {nprobe} is more than the {GPU_MAX_K} a faiss GPU index probes"
    if why is None:
        return "gpu"
    if requested == "gpu":
        raise JobError(f"retrieval device: gpu was asked for, but {why}")
    log(f"device: cpu ({why})")
    return "cpu"


def to_gpu(index, float16: bool = False):
    """A copy of the CPU index on GPU 0 (the one the pod sees), nprobe included. `float16` stores
    a Flat index's vectors in half precision: half the GPU memory and tensor-core GEMMs; `search`
    still rescores the candidates in float32."""
    import faiss

    res = faiss.StandardGpuResources()
    co = faiss.GpuClonerOptions()
    co.useFloat16 = bool(float16)
    gpu = faiss.index_cpu_to_gpu(res, 0, index, co)
    gpu.referenced_objects = [res]  # the resources must live as long as the index (faiss does the same)
    return gpu


def place(index, info: dict[str, Any], device: str, requested: str, float16: bool):
    """The index on `device`. A GPU copy that fails (an index type faiss has no GPU version of, too
    little GPU memory) falls back to the CPU under `auto` and is an error under `gpu`."""
    info.update(device="cpu")
    if device != "gpu":
        return index
    t0 = time.perf_counter()
    try:
        gpu = to_gpu(index, float16)
    except RuntimeError as e:
        if requested == "gpu":
            raise JobError(f"retrieval device: gpu was asked for, but faiss could not copy {info['factory']!r} "
                           f"to the GPU: {str(e).strip().splitlines()[0]}") from e
        log(f"device: cpu (faiss could not copy {info['factory']} to the GPU: {str(e).strip().splitlines()[0]})")
        return index
    info.update(device="gpu", float16=bool(float16))
    log(f"index: on the GPU ({'float16' if float16 else 'float32'}) in {time.perf_counter() - t0:.2f}s")
    return gpu


def search(index, q: np.ndarray, k: int, concepts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by cosine, made independent of how the rows are batched or sharded.

    BLAS results can differ in the last bits with the batch's shape (and faiss switches to a
    non-BLAS kernel below 20 queries; a GPU's GEMM rounds differently again), so a row's near-ties
    could resolve differently for other shard counts or devices. faiss proposes k + margin candidates; each candidate's similarity is then
    recomputed row by row (a fixed-order float32 dot product) and the top k are taken by
    (similarity desc, concept id asc). Costs O(n * (k + margin) * d), nothing next to the search."""
    kk = candidates(k, index.ntotal)
    sims = np.empty((len(q), k), np.float32)
    ids = np.empty((len(q), k), np.int64)
    rb = max(1, RESCORE_ELEMENTS // (kk * concepts.shape[1]))
    for a in range(0, len(q), SEARCH_BATCH):
        qb = q[a:a + SEARCH_BATCH]
        _, cand = index.search(qb, kk)
        for b in range(0, len(qb), rb):
            qs, cs = qb[b:b + rb], cand[b:b + rb]
            ok = cs >= 0
            vec = concepts[np.where(ok, cs, 0)]  # (m, kk, d)
            s = (vec * qs[:, None, :]).sum(axis=-1, dtype=np.float32)
            s[~ok] = -np.inf
            order = np.lexsort((np.where(ok, cs, np.iinfo(np.int64).max), -s), axis=-1)[:, :k]
            sims[a + b:a + b + len(qs)] = np.take_along_axis(s, order, axis=1)
            got = np.take_along_axis(cs, order, axis=1)
            ids[a + b:a + b + len(qs)] = np.where(np.isfinite(sims[a + b:a + b + len(qs)]), got, -1)
    return sims, ids


def recall_hits(labels: np.ndarray, q: np.ndarray, concepts: np.ndarray, k: int) -> int:
    """How many of the rows' top-k `labels` (from an approximate index) exact search also returns."""
    import faiss

    exact = faiss.IndexFlatIP(concepts.shape[1])
    exact.add(concepts)
    _, ex = exact.search(q, k)
    return int(sum(len(np.intersect1d(labels[j][labels[j] >= 0], ex[j])) for j in range(len(q))))
