"""The embed step's model: a CLIP-family model from a local directory (or a URI copied to a local
temp dir), never the hub (HF_HUB_OFFLINE / local_files_only); image and text embeddings."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from vlmops_jobs.common import storage
from vlmops_jobs.common.result import JobError


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


def _batched(n: int, batch: int, features) -> np.ndarray:
    """`features(a, b)` over items [a, b) in batches of `batch`, stacked as a float32 matrix."""
    import torch

    outs = []
    with torch.inference_mode():
        for a in range(0, n, batch):
            outs.append(_features(features(a, a + batch)))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def embed_images(model, proc, images: list, batch: int) -> np.ndarray:
    def features(a: int, b: int):
        inp = proc(images=images[a:b], return_tensors="pt")
        return model.get_image_features(pixel_values=inp["pixel_values"])

    return _batched(len(images), batch, features)


def embed_texts(model, proc, texts: list[str], batch: int) -> np.ndarray:
    def features(a: int, b: int):
        inp = proc(text=texts[a:b], return_tensors="pt", padding=True, truncation=True)
        return model.get_text_features(**{k: v for k, v in inp.items() if k in ("input_ids", "attention_mask")})

    return _batched(len(texts), batch, features)


def mean_of_images(e: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per sample, the mean of its images' L2-normalised embeddings (`owner[j]`: image j's sample)."""
    if not len(e):
        return np.zeros((0, 0), np.float32)
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sums = np.zeros((n, e.shape[1]), np.float32)
    np.add.at(sums, owner, e)
    return sums / np.bincount(owner, minlength=n)[:, None]
