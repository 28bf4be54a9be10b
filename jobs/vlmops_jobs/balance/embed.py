"""Embed images and concept texts with a local CLIP-family model (when spec.source.embedder is set).

Shard i of N writes, under `<output>/embed/shards-<N>/` (`vlmops_contract.layouts.balance`):
  images/part-<i>.parquet     <id-field>, images (absolute URIs), [conversations,] embedding list<float32>
  concepts/part-<i>.parquet   text, embedding list<float32> (shard i embeds concept rows i*C//N..)
  markers/part-<i>.json       commit marker, written last
`retrieve --embedded` then reads these instead of `--source` / `--concepts` embeddings.
Samples without images cannot be placed in image-embedding space: they are dropped (counted).
"""
from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vlmops_contract.layouts import balance as layout
from vlmops_jobs.common import storage
from vlmops_jobs.common.lineage import committed_marker
from vlmops_jobs.common.result import JobError, shard_index

from . import tables
from .arguments import add_inputs, add_sharded_output
from .embedder import embed_images, embed_texts, load_model, mean_of_images
from .shards import fault, log, names


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inputs(p)
    p.add_argument("--image-field", default="images")
    p.add_argument("--embedder", "--model", dest="embedder", required=True,
                   help="local directory (or URI) of a CLIP-family model; no hub access")
    p.add_argument("--batch-size", type=int, default=64)
    add_sharded_output(p)


@dataclass
class Inputs:
    """The shard's source rows and concept texts, with what was read (digests, bytes)."""
    ids: list[str] = field(default_factory=list)
    images: list[list[str]] = field(default_factory=list)   # absolute URIs per sample
    convs: list[Any] = field(default_factory=list)
    has_conv: bool = False
    texts: list[str] = field(default_factory=list)
    inputs: list[dict[str, str]] = field(default_factory=list)
    nbytes: int = 0

    def with_images(self) -> list[int]:
        return [i for i, im in enumerate(self.images) if im]


def run(a: argparse.Namespace) -> dict[str, Any]:
    a.shard = shard_index(a.shard, a.shards, "embed")
    if a.batch_size < 1:
        raise JobError(f"source embedder batch-size: {a.batch_size} must be >= 1")
    t_start = time.perf_counter()
    uris = names(a.output, layout.embed_shard(a.shard, a.shards))
    src_files, _, lo, hi = tables.source_shard(a.source, a.shard, a.shards)
    con_files = tables.list_parquet(a.concepts, "concepts")
    clo, chi = tables.shard_range(tables.total_rows(con_files), a.shard, a.shards)
    inp = _read_inputs(a, src_files, (lo, hi), con_files, (clo, chi))
    keep = inp.with_images()
    dropped = len(inp.ids) - len(keep)

    params = {"source": a.source, "idField": a.id_field, "imageField": a.image_field, "concepts": a.concepts,
              "conceptTextField": a.concept_text_field, "embedder": a.embedder, "batchSize": a.batch_size,
              "rows": [lo, hi], "conceptRows": [clo, chi], "inputs": inp.inputs}
    if committed_marker(uris["marker"], params) is not None:
        log(f"embed shard {a.shard}/{a.shards}: already committed with matching digests; skipping")
        return {"shard": a.shard, "skipped": True, "rows": hi - lo, "output": {"uri": uris["marker"]}}

    model, proc = load_model(a.embedder)
    t0 = time.perf_counter()
    emb, n_images = _embed_samples(a, model, proc, inp, keep)
    t_img = time.perf_counter() - t0
    t0 = time.perf_counter()
    ce = embed_texts(model, proc, inp.texts, a.batch_size) if inp.texts else np.zeros((0, 0), np.float32)
    t_txt = time.perf_counter() - t0

    _write_shard(a, uris, inp, keep, emb, ce, {"parameters": params, "shard": a.shard, "shards": a.shards,
                                               "dropped": dropped})
    total = time.perf_counter() - t_start
    log(f"embed shard {a.shard}/{a.shards}: {len(keep)} samples ({n_images} images, {dropped} without images "
        f"dropped) in {t_img:.2f}s, {len(inp.texts)} concept texts in {t_txt:.2f}s")
    log(f"throughput: {n_images / max(t_img, 1e-9):.1f} images/s, {len(inp.texts) / max(t_txt, 1e-9):.1f} texts/s; "
        f"end-to-end {(hi - lo) / max(total, 1e-9):.1f} items/s, {inp.nbytes / max(total, 1e-9):.0f} bytes/s read")
    return {"shard": a.shard, "skipped": False, "rows": hi - lo, "embedded": len(keep), "droppedWithoutImages": dropped,
            "concepts": chi - clo, "dim": int(emb.shape[1]) if emb.size else int(ce.shape[1]) if ce.size else 0,
            "itemsPerSecond": round((hi - lo) / max(total, 1e-9), 1),
            "bytesPerSecond": round(inp.nbytes / max(total, 1e-9)), "output": {"uri": uris["marker"]}}


def _read_inputs(a: argparse.Namespace, src_files: list[tables.SourceFile], rows: tuple[int, int],
                 con_files: list[tables.SourceFile], concept_rows: tuple[int, int]) -> Inputs:
    """Source rows `rows` (ids, images made absolute, conversations) and concept texts `concept_rows`."""
    out = Inputs()
    for part in tables.read_rows(src_files, *rows, None, "source",
                                 {"id-field": a.id_field, "image-field": a.image_field}):
        t = part.table
        images = [[tables.absolute_image_uri(part.file.uri, x) for x in (l or [])]
                  for l in t.column(a.image_field).to_pylist()]
        out.ids += t.column(a.id_field).cast(pa.string()).to_pylist()
        out.images += images
        if "conversations" in t.column_names:
            out.has_conv = True
            out.convs += t.column("conversations").to_pylist()
        else:
            out.convs += [None] * len(images)
        out.inputs.append({"uri": part.file.uri, "digest": part.digest})
        out.nbytes += part.nbytes
    for part in tables.read_rows(con_files, *concept_rows, [a.concept_text_field], "concepts",
                                 {"text-field": a.concept_text_field}):
        out.texts.extend("" if x is None else str(x) for x in part.table.column(a.concept_text_field).to_pylist())
        out.inputs.append({"uri": part.file.uri, "digest": part.digest})
    return out


def _embed_samples(a: argparse.Namespace, model, proc, inp: Inputs, keep: list[int]) -> tuple[np.ndarray, int]:
    """(one embedding per kept sample: the mean of its images', number of images); adds the
    image bytes read to `inp.nbytes`."""
    from PIL import Image

    flat = []
    for i in keep:
        for u in inp.images[i]:
            try:
                data = storage.read_bytes(u)
            except (OSError, ValueError) as e:
                raise JobError(f"source {a.image_field}: cannot read image {u} (id {inp.ids[i]!r}): {e}") from e
            inp.nbytes += len(data)
            try:
                flat.append(Image.open(io.BytesIO(data)).convert("RGB"))
            except Exception as e:
                raise JobError(f"source {a.image_field}: {u} (id {inp.ids[i]!r}) is not a readable image: {e}") from e
    owner = np.repeat(np.arange(len(keep)), [len(inp.images[i]) for i in keep])
    return mean_of_images(embed_images(model, proc, flat, a.batch_size), owner, len(keep)), len(flat)


def _emb_column(m: np.ndarray) -> pa.Array:
    n, d = m.shape if m.size else (len(m), 0)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, max(d, 1), dtype=np.int32)[:n + 1]),
                                    pa.array(m.reshape(-1).astype(np.float32), pa.float32()))


def _write_shard(a: argparse.Namespace, uris: dict[str, str], inp: Inputs, keep: list[int], emb: np.ndarray,
                 ce: np.ndarray, marker: dict[str, Any]) -> None:
    """The two parquet parts, then the marker with their digests (the commit)."""
    empty = pa.array([], pa.list_(pa.float32()))
    cols: dict[str, Any] = {
        a.id_field: pa.array([inp.ids[i] for i in keep], pa.string()),
        "images": pa.array([inp.images[i] for i in keep], pa.list_(pa.string())),
    }
    if inp.has_conv:
        cols["conversations"] = pa.array([inp.convs[i] for i in keep], pa.string())
    cols["embedding"] = _emb_column(emb) if len(keep) else empty
    d1 = storage.write_bytes_atomic(uris["images"], tables.parquet_bytes(pa.table(cols)))
    con_tab = pa.table({"text": pa.array(inp.texts, pa.string()),
                        "embedding": _emb_column(ce) if inp.texts else empty})
    d2 = storage.write_bytes_atomic(uris["concepts"], tables.parquet_bytes(con_tab))
    fault("embed:before-marker")
    marker["files"] = {"images": {"uri": uris["images"], "digest": d1},
                       "concepts": {"uri": uris["concepts"], "digest": d2}}
    storage.write_json_atomic(uris["marker"], marker)
