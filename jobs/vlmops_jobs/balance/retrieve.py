"""One shard of concept retrieval: the top-k concepts of every sample and per-concept counts.

Shard i of N writes `retrieve/shards-<N>/shard-<i>.{parquet,counts.npy,json}` under `--output`
(`vlmops_contract.layouts.balance`): row (global), id, idHash, concepts list<int32>,
similarities list<float32>; int64 per-concept counts of samples whose top-k holds the concept;
the commit marker (parameters, input digests, file digests), written last.
"""
from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vlmops_contract.layouts import balance as layout
from vlmops_jobs.common import storage
from vlmops_jobs.common.lineage import committed_marker
from vlmops_jobs.common.result import JobError, shard_index

from . import tables
from .arguments import add_inputs, add_sharded_output
from .index import DEVICES, choose_device, get_index, place, recall_hits, search
from .shards import embedded_inputs, fault, log, names, remove_own_temps

RECALL_SALT = 0x5EC411


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inputs(p)
    p.add_argument("--embedding-field", default="embedding")
    p.add_argument("--concept-embedding-field", default="embedding")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--index", default="Flat", help="faiss factory string")
    p.add_argument("--nprobe", type=int, default=None)
    p.add_argument("--min-similarity", type=float, default=-1.0)
    p.add_argument("--recall-sample", type=int, default=1000)
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto: the GPU when faiss has GPU support and sees one, else the CPU; gpu: fail (exit 2) "
                        "without one")
    p.add_argument("--gpu-float16", action="store_true",
                   help="store the index's vectors in float16 on the GPU (half the memory, faster); candidates "
                        "are still rescored in float32")
    p.add_argument("--embedded", action="store_true",
                   help="read the embed step's output (<output>/embed/shards-<N>/) instead of --source/--concepts")
    add_sharded_output(p)


@dataclass
class Queries:
    """The shard's samples: ids and L2-normalised embeddings, with what was read."""
    ids: list[str]
    q: np.ndarray
    inputs: list[dict[str, str]]
    nbytes: int


def run(a: argparse.Namespace) -> dict[str, Any]:
    _check_args(a)
    t_start = time.perf_counter()
    uris = names(a.output, layout.retrieve_shard(a.shard, a.shards))
    src_files, n_rows, lo, hi = tables.source_shard(a.source, a.shard, a.shards)
    params = _parameters(a, src_files, lo, hi)

    # inputs first (all validation happens before anything is written)
    t0 = time.perf_counter()
    concepts, concept_inputs = load_concepts(a.concepts, a.concept_text_field, a.concept_embedding_field)
    if a.top_k > len(concepts):
        raise JobError(f"retrieval top-k: {a.top_k} is larger than the concept vocabulary ({len(concepts)} in {a.concepts})")
    device = choose_device(a.device, a.top_k, len(concepts), a.nprobe)
    qs = _read_queries(a, src_files, lo, hi, concepts.shape[1])
    t_read = time.perf_counter() - t0
    params["inputs"] = {"source": qs.inputs, "concepts": concept_inputs}

    if committed_marker(uris["marker"], params) is not None:
        log(f"shard {a.shard}/{a.shards}: already committed with matching digests; skipping")
        return {"shard": a.shard, "skipped": True, "rows": hi - lo, "output": {"uri": uris["marker"]}}

    t0 = time.perf_counter()
    index, index_info = get_index(a.output, a.index, concepts, concept_inputs, a.nprobe)
    index = place(index, index_info, device, a.device, a.gpu_float16)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    sims, labels = search(index, qs.q, a.top_k, concepts)
    t_search = time.perf_counter() - t0

    hashes = tables.id_hashes(qs.ids)
    recall = _recall(a, index_info, hashes, n_rows, labels, qs.q, concepts)
    valid = (labels >= 0) & (sims >= a.min_similarity)
    t0 = time.perf_counter()
    _write_shard(uris, _topk_table(lo, hi, qs.ids, hashes, labels, sims, valid),
                 np.bincount(labels[valid], minlength=len(concepts)).astype(np.int64),
                 {"parameters": params, "index": index_info, "concepts": int(len(concepts)),
                  "dim": int(concepts.shape[1]), "rows": hi - lo, "totalRows": n_rows,
                  "recall": {"queries": recall[0], "hits": recall[1], "k": a.top_k}})
    t_write = time.perf_counter() - t0
    total = time.perf_counter() - t_start
    n = hi - lo
    flops = 2.0 * len(qs.q) * len(concepts) * concepts.shape[1]
    log(f"shard {a.shard}/{a.shards}: {n} samples x {len(concepts)} concepts d={concepts.shape[1]} "
        f"on {index_info['device']}: read {t_read:.3f}s index {t_index:.3f}s search {t_search:.3f}s write {t_write:.3f}s")
    log(f"throughput: search {n / max(t_search, 1e-9):.1f} items/s ({flops / max(t_search, 1e-9) / 1e9:.2f} GFLOP/s); "
        f"end-to-end {n / max(total, 1e-9):.1f} items/s, {qs.nbytes / max(total, 1e-9):.0f} bytes/s read")
    return _result(a, n, valid, total, qs.nbytes, uris["marker"], recall)


def _check_args(a: argparse.Namespace) -> None:
    """Validate the flags; with `--embedded`, read the embed step's output instead."""
    a.shard = shard_index(a.shard, a.shards, "retrieve")
    if a.top_k < 1:
        raise JobError(f"retrieval top-k: {a.top_k} must be >= 1")
    if not a.output:
        raise JobError("output uri: missing")
    if a.embedded:
        a.source, a.concepts = embedded_inputs(a.output, a.shards)
        a.embedding_field = a.concept_embedding_field = "embedding"
        a.concept_text_field = "text"


def _parameters(a: argparse.Namespace, src_files: list[tables.SourceFile], lo: int, hi: int) -> dict[str, Any]:
    """What the marker records (and a re-run must match to be skipped); `inputs` is added once read."""
    return {
        "source": a.source, "idField": a.id_field, "embeddingField": a.embedding_field,
        "concepts": a.concepts, "conceptTextField": a.concept_text_field,
        "conceptEmbeddingField": a.concept_embedding_field, "topK": a.top_k, "index": a.index,
        "nprobe": a.nprobe, "minSimilarity": a.min_similarity, "recallSample": a.recall_sample,
        "shard": a.shard, "shards": a.shards, "rows": [lo, hi],
        "sourceFiles": [[f.uri, f.rows, f.size] for f in src_files],
        # the device is not a parameter (both give the same top-k); float16 candidates could differ
        **({"gpuFloat16": True} if a.gpu_float16 else {}),
    }


def load_concepts(uri: str, text_field: str, emb_field: str) -> tuple[np.ndarray, list[dict[str, str]]]:
    """The whole vocabulary's L2-normalised embeddings and the files read (with digests)."""
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


def _read_queries(a: argparse.Namespace, src_files: list[tables.SourceFile], lo: int, hi: int, dim: int) -> Queries:
    ids: list[str] = []
    mats, inputs, nbytes = [], [], 0
    for part in tables.read_rows(src_files, lo, hi, [a.id_field, a.embedding_field], "source",
                                 {"id-field": a.id_field, "embedding-field": a.embedding_field}):
        col = part.table.column(a.id_field)
        if col.null_count:
            raise JobError(f"source id-field: {col.null_count} null ids in {part.file.uri}")
        ids.extend(str(x) for x in col.to_pylist())
        m = tables.vectors(part.table.column(a.embedding_field), "source", "embedding-field", part.file.uri)
        if len(m) and m.shape[1] != dim:
            raise JobError(f"source embedding-field: dimension {m.shape[1]} in {part.file.uri} does not match "
                           f"concepts embedding-field dimension {dim}")
        mats.append(m)
        inputs.append({"uri": part.file.uri, "digest": part.digest})
        nbytes += part.nbytes
    mats = [x for x in mats if len(x)]
    if not mats:
        raise JobError(f"source uri: shard {a.shard} of {a.shards} has no rows with embeddings")
    q = np.ascontiguousarray(np.concatenate(mats))
    tables.normalize(q, "source", "embedding-field", ids)
    return Queries(ids, q, inputs, nbytes)


def _recall(a: argparse.Namespace, index_info: dict[str, Any], hashes: np.ndarray, n_rows: int,
            labels: np.ndarray, q: np.ndarray, concepts: np.ndarray) -> tuple[int, int]:
    """(queries, hits) of recall@k against exact search, on an approximate index only. A query is
    picked by a hash of its id, so the same queries are used for any shard count."""
    if not (index_info["approximate"] and a.recall_sample > 0):
        return 0, 0
    rate = min(1.0, a.recall_sample / n_rows)
    pick = np.flatnonzero(tables.uniforms(hashes, 0, RECALL_SALT) < rate)
    if not len(pick):
        return 0, 0
    return int(len(pick)), recall_hits(labels[pick], q[pick], concepts, a.top_k)


def _topk_table(lo: int, hi: int, ids: list[str], hashes: np.ndarray, labels: np.ndarray, sims: np.ndarray,
                valid: np.ndarray) -> pa.Table:
    offsets = np.zeros(len(ids) + 1, np.int32)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    flat_c = labels[valid].astype(np.int32)  # row-major: keeps each row's rank order
    flat_s = sims[valid].astype(np.float32)
    return pa.table({
        "row": pa.array(np.arange(lo, hi, dtype=np.int64)),
        "id": pa.array(ids, pa.string()),
        "idHash": pa.array(hashes, pa.uint64()),
        "concepts": tables.list_column(offsets, pa.array(flat_c, pa.int32())),
        "similarities": tables.list_column(offsets, pa.array(flat_s, pa.float32())),
    })


def _write_shard(uris: dict[str, str], table: pa.Table, counts: np.ndarray, marker: dict[str, Any]) -> None:
    """Data files first, the marker (with their digests) last: a shard killed midway has no marker."""
    remove_own_temps(uris["marker"])
    topk_digest = storage.write_bytes_atomic(uris["topk"], tables.parquet_bytes(table))
    fault("retrieve:after-topk")
    cbuf = io.BytesIO()
    np.save(cbuf, counts)
    counts_digest = storage.write_bytes_atomic(uris["counts"], cbuf.getvalue())
    fault("retrieve:before-marker")
    marker["files"] = {"topk": {"uri": uris["topk"], "digest": topk_digest},
                       "counts": {"uri": uris["counts"], "digest": counts_digest}}
    storage.write_json_atomic(uris["marker"], marker)


def _result(a: argparse.Namespace, n: int, valid: np.ndarray, total: float, nbytes: int, marker_uri: str,
            recall: tuple[int, int]) -> dict[str, Any]:
    res: dict[str, Any] = {"shard": a.shard, "skipped": False, "rows": n,
                           "matched": int(valid.any(axis=1).sum()),
                           "itemsPerSecond": round(n / max(total, 1e-9), 1),
                           "bytesPerSecond": round(nbytes / max(total, 1e-9)),
                           "output": {"uri": marker_uri}}
    if recall[0]:
        res["retrievalRecall"] = round(recall[1] / (recall[0] * a.top_k), 6)
    return res
