"""retrieve: one Indexed-Job shard of concept retrieval (top-k concepts per sample).

Per shard it writes, under `<output>/retrieve/shards-<N>/`:
  shard-<i>.parquet     row (global), id, idHash, concepts list<int32>, similarities list<float32>
  shard-<i>.counts.npy  int64 per-concept count of samples whose top-k holds the concept
  shard-<i>.json        commit marker, written last: parameters, input digests, file digests
A trained (non-Flat) faiss index is built once and stored under `<output>/index/`, with
`index.json` (written last) naming the concept digests it was built from; shards reuse it.
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmops_jobs.common import storage
from vlmops_jobs.common.result import JobError, shard_index

from . import tables

SEARCH_BATCH = 16384
RESCORE_ELEMENTS = 8 << 20  # floats per rescoring block (32 MiB)
RECALL_SALT = 0x5EC411


def log(msg: str) -> None:
    print(f"[balance] {msg}", file=sys.stderr, flush=True)


def shard_prefix(output: str, shards: int) -> str:
    return storage.join(output, "retrieve", f"shards-{shards:05d}")


def shard_names(output: str, shard: int, shards: int) -> dict[str, str]:
    base = storage.join(shard_prefix(output, shards), f"shard-{shard:05d}")
    return {"topk": base + ".parquet", "counts": base + ".counts.npy", "marker": base + ".json"}


def _fault(point: str) -> None:
    """Test hook: VLMOPS_BALANCE_FAULT=<point> kills the process there (like a pod eviction)."""
    if os.environ.get("VLMOPS_BALANCE_FAULT") == point:
        log(f"fault injected at {point}: exiting")
        os._exit(137)


# ---------------------------------------------------------------- concepts and the index

def load_concepts(uri: str, text_field: str, emb_field: str) -> tuple[np.ndarray, list[dict[str, str]]]:
    files = tables.list_parquet(uri, "concepts")
    mats, inputs = [], []
    for part in tables.read_rows(files, 0, tables.total_rows(files), [emb_field], "concepts",
                                 {"embedding-field": emb_field, "text-field": text_field}):
        mats.append(tables.vectors(part.table.column(emb_field), "concepts", "embedding-field", part.file.uri))
        inputs.append({"uri": part.file.uri, "digest": part.digest})
    dims = {m.shape[1] for m in mats if len(m)}
    if len(dims) > 1:
        raise JobError(f"concepts embedding-field: files have different dimensions {sorted(dims)}")
    mats = [x for x in mats if len(x)]
    m = np.concatenate(mats) if mats else np.zeros((0, 0), np.float32)
    if len(m) == 0:
        raise JobError(f"concepts uri: {uri} has no rows")
    tables.normalize(m, "concepts", "embedding-field")
    return np.ascontiguousarray(m), inputs


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
    idx_dir = storage.join(output, "index")
    meta_uri, blob_uri = storage.join(idx_dir, "index.json"), storage.join(idx_dir, "index.faiss")
    want = {"factory": factory, "metric": "IP", "dim": d, "concepts": int(len(concepts)),
            "conceptsDigest": _combined_digest(concept_inputs)}
    loaded = _try_load_index(meta_uri, blob_uri, want)
    if loaded is not None:
        index, digest = loaded
        log(f"index: reusing stored {factory} ({digest[:19]})")
    else:
        t0 = time.perf_counter()
        if not index.is_trained:
            index.train(concepts)
        index.add(concepts)
        log(f"index: built {factory} over {len(concepts)} concepts in {time.perf_counter() - t0:.2f}s")
        # another shard may have committed meanwhile: prefer the stored one so all shards agree
        again = _try_load_index(meta_uri, blob_uri, want)
        if again is not None:
            index, digest = again
        else:
            blob = faiss.serialize_index(index).tobytes()
            digest = storage.write_bytes_atomic(blob_uri, blob)
            storage.write_json_atomic(meta_uri, dict(want, indexDigest=digest))
    info.update(uri=blob_uri, digest=digest)
    return _set_nprobe(index, nprobe), info


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


def search(index, q: np.ndarray, k: int, concepts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by cosine, made independent of how the rows are batched or sharded.

    BLAS results can differ in the last bits with the batch's shape (and faiss switches to a
    non-BLAS kernel below 20 queries), so a row's near-ties could resolve differently for other
    shard counts. faiss proposes k + margin candidates; each candidate's similarity is then
    recomputed row by row (a fixed-order float32 dot product) and the top k are taken by
    (similarity desc, concept id asc). Costs O(n * (k + margin) * d), nothing next to the search."""
    n_c = index.ntotal
    kk = min(n_c, k + max(k, 4))
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


# ---------------------------------------------------------------- the shard

def run_retrieve(a) -> dict[str, Any]:
    a.shard = shard_index(a.shard, a.shards, "retrieve")
    if a.top_k < 1:
        raise JobError(f"retrieval top-k: {a.top_k} must be >= 1")
    if not a.output:
        raise JobError("output uri: missing")
    t_start = time.perf_counter()
    names = shard_names(a.output, a.shard, a.shards)
    if getattr(a, "embedded", False):
        from .embed import embedded_inputs

        a.source, a.concepts = embedded_inputs(a.output, a.shards)
        a.embedding_field = a.concept_embedding_field = "embedding"
        a.concept_text_field = "text"

    src_files = tables.list_parquet(a.source, "source")
    n_rows = tables.total_rows(src_files)
    lo, hi = tables.shard_range(n_rows, a.shard, a.shards)
    if hi <= lo:
        raise JobError(f"source uri: shard {a.shard} of {a.shards} is empty ({n_rows} rows in {a.source})")

    params = {
        "source": a.source, "idField": a.id_field, "embeddingField": a.embedding_field,
        "concepts": a.concepts, "conceptTextField": a.concept_text_field,
        "conceptEmbeddingField": a.concept_embedding_field, "topK": a.top_k, "index": a.index,
        "nprobe": a.nprobe, "minSimilarity": a.min_similarity, "recallSample": a.recall_sample,
        "shard": a.shard, "shards": a.shards, "rows": [lo, hi],
        "sourceFiles": [[f.uri, f.rows, f.size] for f in src_files],
    }

    # inputs first (all validation happens before anything is written)
    t0 = time.perf_counter()
    concepts, concept_inputs = load_concepts(a.concepts, a.concept_text_field, a.concept_embedding_field)
    if a.top_k > len(concepts):
        raise JobError(f"retrieval top-k: {a.top_k} is larger than the concept vocabulary ({len(concepts)} in {a.concepts})")
    ids: list[str] = []
    mats, src_inputs, nbytes = [], [], 0
    for part in tables.read_rows(src_files, lo, hi, [a.id_field, a.embedding_field], "source",
                                 {"id-field": a.id_field, "embedding-field": a.embedding_field}):
        col = part.table.column(a.id_field)
        if col.null_count:
            raise JobError(f"source id-field: {col.null_count} null ids in {part.file.uri}")
        ids.extend(str(x) for x in col.to_pylist())
        m = tables.vectors(part.table.column(a.embedding_field), "source", "embedding-field", part.file.uri)
        if len(m) and m.shape[1] != concepts.shape[1]:
            raise JobError(f"source embedding-field: dimension {m.shape[1]} in {part.file.uri} does not match "
                           f"concepts embedding-field dimension {concepts.shape[1]}")
        mats.append(m)
        src_inputs.append({"uri": part.file.uri, "digest": part.digest})
        nbytes += part.nbytes
    mats = [x for x in mats if len(x)]
    if not mats:
        raise JobError(f"source uri: shard {a.shard} of {a.shards} has no rows with embeddings")
    q = np.ascontiguousarray(np.concatenate(mats))
    tables.normalize(q, "source", "embedding-field", ids)
    t_read = time.perf_counter() - t0
    params["inputs"] = {"source": src_inputs, "concepts": concept_inputs}

    # resumability: a committed shard with the same parameters and intact files is skipped
    done = _committed(names, params)
    if done is not None:
        log(f"shard {a.shard}/{a.shards}: already committed with matching digests; skipping")
        return {"shard": a.shard, "skipped": True, "rows": hi - lo, "output": {"uri": names["marker"]}}

    t0 = time.perf_counter()
    index, index_info = get_index(a.output, a.index, concepts, concept_inputs, a.nprobe)
    t_index = time.perf_counter() - t0

    t0 = time.perf_counter()
    sims, labels = search(index, q, a.top_k, concepts)
    t_search = time.perf_counter() - t0
    flops = 2.0 * len(q) * len(concepts) * concepts.shape[1]

    hashes = tables.id_hashes(ids)
    recall_q = recall_hits = 0
    if index_info["approximate"] and a.recall_sample > 0:
        rate = min(1.0, a.recall_sample / n_rows)
        pick = np.flatnonzero(tables.uniforms(hashes, 0, RECALL_SALT) < rate)
        if len(pick):
            import faiss

            exact = faiss.IndexFlatIP(concepts.shape[1])
            exact.add(concepts)
            _, ex = exact.search(q[pick], a.top_k)
            ap = labels[pick]
            recall_q = int(len(pick))
            recall_hits = int(sum(len(np.intersect1d(ap[j][ap[j] >= 0], ex[j])) for j in range(len(pick))))

    valid = (labels >= 0) & (sims >= a.min_similarity)
    counts = np.bincount(labels[valid], minlength=len(concepts)).astype(np.int64)
    lens = valid.sum(axis=1)
    offsets = np.zeros(len(q) + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    flat_c = labels[valid].astype(np.int32)  # row-major: keeps each row's rank order
    flat_s = sims[valid].astype(np.float32)
    table = pa.table({
        "row": pa.array(np.arange(lo, hi, dtype=np.int64)),
        "id": pa.array(ids, pa.string()),
        "idHash": pa.array(hashes, pa.uint64()),
        "concepts": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_c, pa.int32())),
        "similarities": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_s, pa.float32())),
    })

    t0 = time.perf_counter()
    _remove_own_temps(names["marker"])
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    topk_digest = storage.write_bytes_atomic(names["topk"], buf.getvalue())
    _fault("retrieve:after-topk")
    cbuf = io.BytesIO()
    np.save(cbuf, counts)
    counts_digest = storage.write_bytes_atomic(names["counts"], cbuf.getvalue())
    _fault("retrieve:before-marker")
    marker = {
        "parameters": params,
        "index": index_info,
        "concepts": int(len(concepts)),
        "dim": int(concepts.shape[1]),
        "rows": hi - lo,
        "totalRows": n_rows,
        "recall": {"queries": recall_q, "hits": recall_hits, "k": a.top_k},
        "files": {"topk": {"uri": names["topk"], "digest": topk_digest},
                  "counts": {"uri": names["counts"], "digest": counts_digest}},
    }
    storage.write_json_atomic(names["marker"], marker)
    t_write = time.perf_counter() - t0
    total = time.perf_counter() - t_start
    n = hi - lo
    log(f"shard {a.shard}/{a.shards}: {n} samples x {len(concepts)} concepts d={concepts.shape[1]} "
        f"read {t_read:.3f}s index {t_index:.3f}s search {t_search:.3f}s write {t_write:.3f}s")
    log(f"throughput: search {n / max(t_search, 1e-9):.1f} items/s ({flops / max(t_search, 1e-9) / 1e9:.2f} GFLOP/s); "
        f"end-to-end {n / max(total, 1e-9):.1f} items/s, {nbytes / max(total, 1e-9):.0f} bytes/s read")
    res: dict[str, Any] = {"shard": a.shard, "skipped": False, "rows": n,
                           "matched": int(valid.any(axis=1).sum()),
                           "itemsPerSecond": round(n / max(total, 1e-9), 1),
                           "bytesPerSecond": round(nbytes / max(total, 1e-9)),
                           "output": {"uri": names["marker"]}}
    if recall_q:
        res["retrievalRecall"] = round(recall_hits / (recall_q * a.top_k), 6)
    return res


def _remove_own_temps(marker_uri: str) -> None:
    """Temp keys a killed earlier attempt of this shard left behind (atomic_open's `.tmp-<uuid>-<name>`)."""
    fs, path = storage.get_fs(marker_uri)
    parent, base = path.rsplit("/", 1)
    stem = base[: -len(".json")]
    try:
        fs.invalidate_cache(parent)
        for p in fs.ls(parent, detail=False):
            name = p.rsplit("/", 1)[-1]
            if name.startswith(".tmp-") and name.split("-", 2)[-1].startswith(stem + "."):
                fs.rm(p)
    except (FileNotFoundError, OSError):
        pass


def _committed(names: dict[str, str], params: dict[str, Any]) -> dict[str, Any] | None:
    if not storage.exists(names["marker"]):
        return None
    try:
        marker = storage.read_json(names["marker"])
    except (ValueError, OSError):
        return None
    if marker.get("parameters") != json.loads(json.dumps(params)):
        return None
    for f in marker.get("files", {}).values():
        if not storage.exists(f["uri"]) or storage.sha256_uri(f["uri"]) != f["digest"]:
            return None
    return marker
