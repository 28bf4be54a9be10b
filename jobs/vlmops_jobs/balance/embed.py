"""embed (optional, when spec.source.embedder is set): image and concept-text embeddings with a
CLIP-family model loaded from a local directory (or a URI copied to a local temp dir); no hub
access at run time (HF_HUB_OFFLINE / local_files_only).

Shard i of N writes, under `<output>/embed/shards-<N>/`:
  images/part-<i>.parquet     <id-field>, images (absolute URIs), [conversations,] embedding list<float32>
  concepts/part-<i>.parquet   text, embedding list<float32> (shard i embeds concept rows i*C//N..)
  markers/part-<i>.json       commit marker, written last
`retrieve --embedded` then reads these instead of `--source` / `--concepts` embeddings.
Samples without images cannot be placed in image-embedding space: they are dropped (counted).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmops_jobs.common import storage
from vlmops_jobs.common.result import JobError, shard_index

from . import tables
from .retrieve import _fault, log


def embed_prefix(output: str, shards: int) -> str:
    return storage.join(output, "embed", f"shards-{shards:05d}")


def _local_model(uri: str) -> str:
    if "://" not in uri or uri.startswith("file://"):
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if not os.path.isdir(path):
            raise JobError(f"source embedder: model directory {uri} does not exist")
        return path
    fs, path = storage.get_fs(uri)
    if not fs.isdir(path):
        raise JobError(f"source embedder: model {uri} does not exist")
    local = tempfile.mkdtemp(prefix="vlmops-embedder-")
    fs.get(path.rstrip("/") + "/", local + "/", recursive=True)
    return local


def load_model(uri: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoProcessor

    path = _local_model(uri)
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        proc = AutoProcessor.from_pretrained(path, local_files_only=True)
    except Exception as e:  # not a model directory, unknown architecture, ...
        raise JobError(f"source embedder: cannot load a CLIP-family model from {uri}: {e}") from e
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise JobError(f"source embedder: {type(model).__name__} has no get_image_features/get_text_features")
    torch.manual_seed(0)
    return model, proc


def _features(out) -> "np.ndarray":
    t = out if hasattr(out, "detach") else getattr(out, "pooler_output", None)
    if t is None:
        t = out[0]
    return t.detach().float().cpu().numpy()


def embed_images(model, proc, images: list, batch: int) -> np.ndarray:
    import torch

    outs = []
    with torch.inference_mode():
        for a in range(0, len(images), batch):
            inp = proc(images=images[a:a + batch], return_tensors="pt")
            outs.append(_features(model.get_image_features(pixel_values=inp["pixel_values"])))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def embed_texts(model, proc, texts: list[str], batch: int) -> np.ndarray:
    import torch

    outs = []
    with torch.inference_mode():
        for a in range(0, len(texts), batch):
            inp = proc(text=texts[a:a + batch], return_tensors="pt", padding=True, truncation=True)
            kw = {k: v for k, v in inp.items() if k in ("input_ids", "attention_mask")}
            outs.append(_features(model.get_text_features(**kw)))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def _emb_column(m: np.ndarray) -> pa.Array:
    n, d = m.shape if m.size else (len(m), 0)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, max(d, 1), dtype=np.int32)[:n + 1]),
                                    pa.array(m.reshape(-1).astype(np.float32), pa.float32()))


def _parquet(t: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="zstd")
    return buf.getvalue()


def run_embed(a) -> dict[str, Any]:
    from PIL import Image

    a.shard = shard_index(a.shard, a.shards, "embed")
    if a.batch_size < 1:
        raise JobError(f"source embedder batch-size: {a.batch_size} must be >= 1")
    t_start = time.perf_counter()
    pre = embed_prefix(a.output, a.shards)
    img_uri = storage.join(pre, "images", f"part-{a.shard:05d}.parquet")
    con_uri = storage.join(pre, "concepts", f"part-{a.shard:05d}.parquet")
    marker_uri = storage.join(pre, "markers", f"part-{a.shard:05d}.json")

    src_files = tables.list_parquet(a.source, "source")
    n_rows = tables.total_rows(src_files)
    lo, hi = tables.shard_range(n_rows, a.shard, a.shards)
    if hi <= lo:
        raise JobError(f"source uri: shard {a.shard} of {a.shards} is empty ({n_rows} rows in {a.source})")
    con_files = tables.list_parquet(a.concepts, "concepts")
    c_rows = tables.total_rows(con_files)
    clo, chi = tables.shard_range(c_rows, a.shard, a.shards)

    parts, inputs, nbytes = [], [], 0
    for part in tables.read_rows(src_files, lo, hi, None, "source",
                                 {"id-field": a.id_field, "image-field": a.image_field}):
        t = part.table
        cols = {a.id_field: t.column(a.id_field).cast(pa.string()),
                "images": [[tables.absolute_image_uri(part.file.uri, x) for x in (l or [])]
                           for l in t.column(a.image_field).to_pylist()]}
        if "conversations" in t.column_names:
            cols["conversations"] = t.column("conversations").to_pylist()
        parts.append(cols)
        inputs.append({"uri": part.file.uri, "digest": part.digest})
        nbytes += part.nbytes
    texts: list[str] = []
    for part in tables.read_rows(con_files, clo, chi, [a.concept_text_field], "concepts",
                                 {"text-field": a.concept_text_field}):
        texts.extend("" if x is None else str(x) for x in part.table.column(a.concept_text_field).to_pylist())
        inputs.append({"uri": part.file.uri, "digest": part.digest})

    ids, images, convs = [], [], []
    for cols in parts:
        ids += cols[a.id_field].to_pylist()
        images += cols["images"]
        convs += cols.get("conversations", [None] * len(cols["images"]))
    has_conv = any("conversations" in c for c in parts)
    keep = [i for i, im in enumerate(images) if im]
    dropped = len(ids) - len(keep)

    params = {"source": a.source, "idField": a.id_field, "imageField": a.image_field, "concepts": a.concepts,
              "conceptTextField": a.concept_text_field, "embedder": a.embedder, "batchSize": a.batch_size,
              "rows": [lo, hi], "conceptRows": [clo, chi], "inputs": inputs}
    if storage.exists(marker_uri):  # resumability: same inputs and parameters, intact files -> skip
        try:
            m = storage.read_json(marker_uri)
            ok = m.get("parameters") == json.loads(json.dumps(params)) and all(
                storage.exists(f["uri"]) and storage.sha256_uri(f["uri"]) == f["digest"] for f in m["files"].values())
        except (ValueError, OSError, KeyError):
            ok = False
        if ok:
            log(f"embed shard {a.shard}/{a.shards}: already committed with matching digests; skipping")
            return {"shard": a.shard, "skipped": True, "rows": hi - lo, "output": {"uri": marker_uri}}

    model, proc = load_model(a.embedder)
    t0 = time.perf_counter()
    flat = []
    for i in keep:
        for u in images[i]:
            try:
                data = storage.read_bytes(u)
            except (OSError, ValueError) as e:
                raise JobError(f"source {a.image_field}: cannot read image {u} (id {ids[i]!r}): {e}") from e
            nbytes += len(data)
            try:
                flat.append(Image.open(io.BytesIO(data)).convert("RGB"))
            except Exception as e:
                raise JobError(f"source {a.image_field}: {u} (id {ids[i]!r}) is not a readable image: {e}") from e
    # average the normalised embeddings of a sample's images
    own = np.repeat(np.arange(len(keep)), [len(images[i]) for i in keep])
    e = embed_images(model, proc, flat, a.batch_size)
    if len(e):
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        sums = np.zeros((len(keep), e.shape[1]), np.float32)
        np.add.at(sums, own, e)
        emb = sums / np.bincount(own, minlength=len(keep))[:, None]
    else:
        emb = np.zeros((0, 0), np.float32)
    t_img = time.perf_counter() - t0
    t0 = time.perf_counter()
    ce = embed_texts(model, proc, texts, a.batch_size) if texts else np.zeros((0, 0), np.float32)
    t_txt = time.perf_counter() - t0

    cols_out: dict[str, Any] = {
        a.id_field: pa.array([ids[i] for i in keep], pa.string()),
        "images": pa.array([images[i] for i in keep], pa.list_(pa.string())),
    }
    if has_conv:
        cols_out["conversations"] = pa.array([convs[i] for i in keep], pa.string())
    cols_out["embedding"] = _emb_column(emb) if len(keep) else pa.array([], pa.list_(pa.float32()))
    d1 = storage.write_bytes_atomic(img_uri, _parquet(pa.table(cols_out)))
    con_tab = pa.table({"text": pa.array(texts, pa.string()),
                        "embedding": _emb_column(ce) if texts else pa.array([], pa.list_(pa.float32()))})
    d2 = storage.write_bytes_atomic(con_uri, _parquet(con_tab))
    _fault("embed:before-marker")
    storage.write_json_atomic(marker_uri, {"parameters": params, "shard": a.shard, "shards": a.shards,
                                           "dropped": dropped,
                                           "files": {"images": {"uri": img_uri, "digest": d1},
                                                     "concepts": {"uri": con_uri, "digest": d2}}})
    total = time.perf_counter() - t_start
    log(f"embed shard {a.shard}/{a.shards}: {len(keep)} samples ({len(flat)} images, {dropped} without images "
        f"dropped) in {t_img:.2f}s, {len(texts)} concept texts in {t_txt:.2f}s")
    log(f"throughput: {len(flat) / max(t_img, 1e-9):.1f} images/s, {len(texts) / max(t_txt, 1e-9):.1f} texts/s; "
        f"end-to-end {(hi - lo) / max(total, 1e-9):.1f} items/s, {nbytes / max(total, 1e-9):.0f} bytes/s read")
    return {"shard": a.shard, "skipped": False, "rows": hi - lo, "embedded": len(keep), "droppedWithoutImages": dropped,
            "concepts": chi - clo, "dim": int(emb.shape[1]) if emb.size else int(ce.shape[1]) if ce.size else 0,
            "itemsPerSecond": round((hi - lo) / max(total, 1e-9), 1), "bytesPerSecond": round(nbytes / max(total, 1e-9)),
            "output": {"uri": marker_uri}}


def embedded_inputs(output: str, shards: int) -> tuple[str, str]:
    """For `retrieve --embedded`: the embed outputs, after checking every embed shard committed."""
    pre = embed_prefix(output, shards)
    for i in range(shards):
        if not storage.exists(storage.join(pre, "markers", f"part-{i:05d}.json")):
            raise JobError(f"output embed: embed shard {i} of {shards} is not committed under {pre} "
                           f"(run `embed --shard {i} --shards {shards}` first)")
    return storage.join(pre, "images"), storage.join(pre, "concepts")
