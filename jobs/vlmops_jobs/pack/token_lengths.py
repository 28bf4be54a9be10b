"""Token lengths: chat-templated text tokens + Qwen2-VL-style image tokens (headers only)."""
from __future__ import annotations

import io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from ..common import image_refs, image_tokens as image_form, storage
from ..common.result import JobError

IMAGE_MARKER = "<image>"


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 3136, max_pixels: int = 2560000):
    """Qwen2-VL's rule: round each side to a multiple of `factor`, then rescale (keeping the
    aspect ratio) into [min_pixels, max_pixels]. Returns (h', w')."""
    if min(height, width) <= 0:
        raise ValueError(f"bad image size {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio over 200 ({width}x{height})")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(width: int, height: int, patch: int = 14, merge: int = 2, min_pixels: int = 3136, max_pixels: int = 2560000) -> int:
    factor = patch * merge
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
    return (h // factor) * (w // factor)


def image_size(uri: str, head: int = 65536) -> tuple[int, int]:
    """(width, height) from the file's header; reads only the first bytes when they suffice."""
    from PIL import Image

    fs, path = storage.get_fs(uri)
    with fs.open(path, "rb") as f:
        data = f.read(head)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Exception:
            data += f.read()
    with Image.open(io.BytesIO(data)) as im:  # raises on undecodable data
        return im.size


def _chat_template(path: str, config: dict) -> str:
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates
        template = next((t["template"] for t in template if t.get("name") == "default"), template[0]["template"])
    if not template:
        jinja = os.path.join(path, "chat_template.jinja")
        if os.path.isfile(jinja):
            template = open(jinja).read()
    if not template:
        raise JobError(f"tokenizer {path}: chat_template: missing in tokenizer_config.json")
    return template


class TextCounter:
    """Chat template (jinja, as transformers renders it) + a `tokenizers` fast tokenizer."""

    def __init__(self, path: str):
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        if path.startswith("file://"):
            path = path[len("file://") :]
        tokenizer_json = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tokenizer_json):
            raise JobError(f"tokenizer {path}: no tokenizer.json (a local Hugging Face tokenizer directory is required)")
        self.tok = Tokenizer.from_file(tokenizer_json)
        config = {}
        config_json = os.path.join(path, "tokenizer_config.json")
        if os.path.isfile(config_json):
            with open(config_json) as f:
                config = json.load(f)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self.template = env.from_string(_chat_template(path, config))
        self.special = {k: config.get(k) for k in ("bos_token", "eos_token", "pad_token")}
        self.image = image_form.for_vocab(self.tok.get_vocab(with_added_tokens=True))
        if self.image is None:
            raise JobError(f"tokenizer {path}: {image_form.MISSING}")

    def render(self, messages: list[dict]) -> str:
        return self.template.render(messages=messages, add_generation_prompt=False,
                                    **{k: v for k, v in self.special.items() if isinstance(v, str)})

    def count(self, texts: list[str]) -> np.ndarray:
        """Tokens of rendered conversations, each `<image>` marker in the tokenizer's image form."""
        encs = self.tok.encode_batch([self.image.render(t) for t in texts], add_special_tokens=False)
        return np.array([len(e.ids) for e in encs], dtype=np.int64)


class ImageGeometry(NamedTuple):
    """How images become tokens (the spec's patchSize, mergeSize, minPixels, maxPixels)."""

    patch: int
    merge: int
    min_pixels: int
    max_pixels: int


class TokenCounts(NamedTuple):
    """Per row: text tokens (template included), image tokens per image, absolute image URIs,
    total tokens; and the rendered text's size in bytes (for the throughput log)."""

    text: np.ndarray
    images: list[list[int]]
    image_uris: list[list[str]]
    totals: np.ndarray
    text_bytes: int


def _render(rows: list[dict], base_dirs: list[str], counter: TextCounter) -> tuple[list[str], list[list[str]]]:
    """Each row's rendered conversation and absolute image URIs, checked."""
    texts = []
    all_images: list[list[str]] = []
    for row, base in zip(rows, base_dirs):
        sid = row["id"]
        raw = row.get("conversations")
        try:
            conv = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as e:
            raise JobError(f"sample {sid} conversations: not JSON ({e})")
        if not conv or not any(isinstance(m, dict) and str(m.get("content") or "").strip() for m in conv):
            raise JobError(f"sample {sid} conversations: no text")
        images = [image_refs.resolve(base, i) for i in (row.get("images") or [])]
        markers = sum(str(m.get("content", "")).count(IMAGE_MARKER) for m in conv if m.get("role") == "user")
        if markers != len(images):
            raise JobError(f"sample {sid} images: {len(images)} images but {markers} {IMAGE_MARKER} markers in user turns")
        texts.append(counter.render(conv))
        all_images.append(images)
    return texts, all_images


def _image_tokens(rows: list[dict], all_images: list[list[str]], geometry: ImageGeometry,
                  threads: int) -> list[list[int]]:
    """Image tokens per image of each row, from the headers read with `threads` threads."""
    flat = [u for imgs in all_images for u in imgs]
    owners = [row["id"] for row, imgs in zip(rows, all_images) for _ in imgs]

    def size_of(i: int):
        try:
            return image_size(flat[i])
        except Exception as e:
            raise JobError(f"sample {owners[i]} images: unreadable image {flat[i]} ({type(e).__name__}: {e})")

    with ThreadPoolExecutor(max_workers=threads) as ex:
        sizes = list(ex.map(size_of, range(len(flat))))
    tokens = []
    for i, (w, h) in enumerate(sizes):
        try:
            tokens.append(image_tokens(w, h, *geometry))
        except ValueError as e:
            raise JobError(f"sample {owners[i]} images: {flat[i]}: {e}")
    per_row: list[list[int]] = []
    pos = 0
    for imgs in all_images:
        per_row.append(tokens[pos : pos + len(imgs)])
        pos += len(imgs)
    return per_row


def count_tokens(rows: list[dict], base_dirs: list[str], counter: TextCounter, geometry: ImageGeometry,
                 threads: int = 16) -> TokenCounts:
    texts, all_images = _render(rows, base_dirs, counter)
    text_tokens = counter.count(texts)
    per_row_images = _image_tokens(rows, all_images, geometry, threads)
    # each image is one placeholder token in the text (plus the tokens around it, if the tokenizer has them);
    # the trainer replaces the placeholder by the image's N tokens
    totals = np.array([t - len(im) + sum(im) for t, im in zip(text_tokens.tolist(), per_row_images)], dtype=np.int64)
    return TokenCounts(text_tokens, per_row_images, all_images, totals, sum(len(t.encode()) for t in texts))
