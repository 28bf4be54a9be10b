"""Training data: PackedDataset WebDataset tars (docs/contracts.md, read by `vlmops_jobs.pack.reader`) -> micro-batches.

One packed sequence = one micro-batch (micro=1). Within it, every sub-sample keeps its own
position ids (reset to 0) and attends only to itself (block-diagonal causal mask on CPU; on GPU
with Transformer Engine the same boundaries go in as cu_seqlens / THD). The loss is masked to
assistant tokens (answer text + its <|im_end|>).

Order is a pure function of (seed, step): for step s the global batch is positions
[s*G, (s+1)*G) of an endless sequence of per-epoch permutations of all sequences, and DP rank r
takes every DP-th of them. So the loader's position in a checkpoint is just the step number.
"""
from __future__ import annotations

import io
import json
import math
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from ..common import image_tokens as image_form, storage
from ..common.result import JobError
from ..pack.reader import PackedShardReader
from vlmops_contract.model_shapes import VisionShape

from ..pack.token_lengths import smart_resize  # the packer's rule, so token counts agree exactly

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_SYSTEM = "You are a helpful assistant."
FACTOR = 28  # patch 14 x merge 2: the packing job's image-token unit


# ------------------------------------------------------------------------------------------
# Tokenizer + chat template (Qwen2-style ChatML, as vlmops_jobs.common.synthetic writes it)
# ------------------------------------------------------------------------------------------
class ChatTokenizer:
    def __init__(self, path: str):
        from tokenizers import Tokenizer

        local = _local_copy(path)
        f = os.path.join(local, "tokenizer.json") if os.path.isdir(local) else local
        if not os.path.exists(f):
            raise JobError(f"tokenizer {path}: no tokenizer.json")
        self.tok = Tokenizer.from_file(f)
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        ids = {t: self.tok.token_to_id(t) for t in ("<|im_start|>", "<|im_end|>")}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise JobError(f"tokenizer {path}: missing special tokens {missing}")
        self.image_tokens = image_form.for_vocab(self.tok.get_vocab(with_added_tokens=True))
        if self.image_tokens is None:
            raise JobError(f"tokenizer {path}: {image_form.MISSING}")
        self.im_start, self.im_end = ids["<|im_start|>"], ids["<|im_end|>"]
        self.image = self.tok.token_to_id(self.image_tokens.pad)
        self._around = (self.text(self.image_tokens.before), self.text(self.image_tokens.after))
        self.pad = self.tok.token_to_id("<pad>") or 0
        self.dir = local if os.path.isdir(local) else os.path.dirname(local)

    def text(self, s: str) -> list[int]:
        return self.tok.encode(s, add_special_tokens=False).ids if s else []

    def encode_conversation(self, conversations: list[dict]) -> tuple[list[int], list[int]]:
        """(ids, target) in text space; one image placeholder id per image; target=1 on assistant tokens."""
        msgs = list(conversations)
        if not msgs or msgs[0].get("role") != "system":
            msgs = [{"role": "system", "content": DEFAULT_SYSTEM}] + msgs
        ids: list[int] = []
        tgt: list[int] = []
        for m in msgs:
            role, content = m.get("role", "user"), m.get("content", "")
            head = [self.im_start] + self.text(f"{role}\n")
            ids += head
            tgt += [0] * len(head)
            is_answer = role == "assistant"
            parts = content.split("<image>")
            for j, part in enumerate(parts):
                if j:  # the image placeholder (and the tokens around it, for Qwen-VL tokenizers)
                    placeholder = self._around[0] + [self.image] + self._around[1]
                    ids += placeholder
                    tgt += [0] * len(placeholder)
                t = self.text(part)
                ids += t
                tgt += [int(is_answer)] * len(t)
            ids.append(self.im_end)
            tgt.append(int(is_answer))
            nl = self.text("\n")
            ids += nl
            tgt += [0] * len(nl)
        return ids, tgt


def _local_copy(path: str) -> str:
    """Tokenizer dirs may live in object storage: copy to a local cache dir once."""
    if "://" not in path or path.startswith("file://"):
        return path[len("file://"):] if path.startswith("file://") else path
    import hashlib
    import tempfile

    dst = os.path.join(tempfile.gettempdir(), "vlmops-tok-" + hashlib.sha1(path.encode()).hexdigest()[:12])
    if not os.path.isdir(dst):
        fs, p = storage.get_fs(path)
        tmp = dst + f".tmp{os.getpid()}"
        fs.get(p.rstrip("/") + "/", tmp, recursive=True)
        try:
            os.rename(tmp, dst)
        except OSError:
            pass
    return dst


# ------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------
def image_grid(h: int, w: int, tokens: int | None, cell: int = FACTOR) -> tuple[int, int]:
    """Grid (rows, cols) of image-token cells: the packing job's count when it is known."""
    hb, wb = smart_resize(h, w, cell)
    gh, gw = hb // cell, wb // cell
    if tokens is None or gh * gw == tokens:
        return gh, gw
    best = None
    for r in range(1, tokens + 1):
        if tokens % r == 0:
            c = tokens // r
            err = abs(math.log(r / c) - math.log(h / w))
            if best is None or err < best[0]:
                best = (err, r, c)
    return best[1], best[2]


def image_patches(data: bytes, tokens: int | None, patch: int = 14, merge: int = 2
                  ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Decode, resize to the packer's grid of (patch*merge)-px cells, normalize, cut into patch x patch
    patches [N, 3*patch*patch] in merge-window order (each merge x merge group of patches contiguous,
    groups in raster order), as the release's image processor lays them out. Returns (patches,
    (t, rows, cols) in patches): the merger turns them into exactly `tokens` LLM tokens."""
    from PIL import Image

    cell = patch * merge
    im = Image.open(io.BytesIO(data)).convert("RGB")
    gh, gw = image_grid(im.height, im.width, tokens, cell)
    im = im.resize((gw * cell, gh * cell), Image.BICUBIC)
    a = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)  # [H, W, 3]
    a = (a - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    x = a.permute(2, 0, 1).reshape(3, gh, merge, patch, gw, merge, patch)
    x = x.permute(1, 4, 2, 5, 0, 3, 6).reshape(gh * gw * merge * merge, 3 * patch * patch)
    return x.contiguous(), (1, gh * merge, gw * merge)


# ------------------------------------------------------------------------------------------
# Shards (read through the packing job's reader)
# ------------------------------------------------------------------------------------------
class PackedShards(PackedShardReader):
    """The packed sequences of `--data`, plus what a resume checks and what the manifest records."""

    def __init__(self, data_uri: str):
        super().__init__(data_uri, label="data")
        self.data_uri = self.uri

    def identity(self) -> dict[str, Any]:
        """What a resume must find unchanged: the dataset's content digest (its manifest's, else one
        over the shard names and sizes) and its sequence length (capacity)."""
        if storage.exists(self.manifest_uri):
            digest = storage.sha256_uri(self.manifest_uri)
        else:
            import hashlib

            h = hashlib.sha256()
            for p in self.shards:
                h.update(f"{p.rsplit('/', 1)[-1]}:{self.fs.size(p)}\n".encode())
            digest = "sha256:" + h.hexdigest()
        return {"digest": digest, "sequenceLength": self.meta(0).get("capacity")}

    def digest_inputs(self) -> dict[str, Any]:
        """The packed dataset as an input: its identity (content, wherever stored) and its location."""
        if storage.exists(self.manifest_uri):
            m = storage.read_json(self.manifest_uri)
            return {"uri": self.data_uri, "manifest": self.manifest_uri,
                    "digest": m.get("identity") or storage.sha256_uri(self.manifest_uri)}
        return {"uri": self.data_uri}


# ------------------------------------------------------------------------------------------
# Micro-batches
# ------------------------------------------------------------------------------------------
@dataclass
class _SubSample:
    """One sample of a packed sequence, encoded: token ids (one id per <image>), targets, its images."""

    index: int  # position in the packed sequence (its segment id)
    ids: list[int]
    targets: list[int]
    patches: list[torch.Tensor]
    grids: list[tuple[int, int, int]]  # (t, rows, cols) in patches, per image
    merge: int

    @property
    def length(self) -> int:
        """Tokens once each <image> id is expanded to its merged tokens."""
        return len(self.ids) - len(self.grids) + sum(t * h * w for t, h, w in self.grids) // self.merge ** 2



def _encode_sample(index: int, sample: dict[str, Any], raw: dict[str, bytes], tok: ChatTokenizer,
                   vision: VisionShape, sequence: Any) -> _SubSample:
    convs = sample["conversations"]
    if isinstance(convs, str):
        convs = json.loads(convs)
    ids, targets = tok.encode_conversation(convs)
    n_img = sum(1 for t in ids if t == tok.image)
    planned = list(sample.get("imageTokens") or [None] * n_img)
    names = list(sample.get("images") or [])
    if len(names) != n_img:
        raise JobError(f"data sequence {sequence}: sample {sample.get('id')} has {n_img} <image> "
                       f"tags but {len(names)} images")
    patches, grids = [], []
    for j, name in enumerate(names):
        data = raw.get(name)
        if data is None:
            raise JobError(f"data sequence {sequence}: missing image entry {name}")
        p, g = image_patches(data, planned[j] if j < len(planned) else None, vision.patch, vision.merge)
        patches.append(p)
        grids.append(g)
    return _SubSample(index, ids, targets, patches, grids, vision.merge)


def build_microbatch(raw: dict[str, bytes], tok: ChatTokenizer, vision: VisionShape, max_len: int) -> dict[str, Any]:
    """One packed sequence -> model inputs. Each image contributes exactly its planned token count;
    a sub-sample that does not fit the model's max sequence length is left out and counted
    (`dropped_samples`), never silently."""
    meta = json.loads(raw["json"])
    kept: list[_SubSample] = []
    combined = dropped = 0
    for index, sample in enumerate(meta["samples"]):
        sub = _encode_sample(index, sample, raw, tok, vision, meta.get("sequence"))
        if combined + sub.length > max_len:
            dropped += 1
            continue
        kept.append(sub)
        combined += sub.length
    if not kept:
        raise JobError(f"data sequence {meta.get('sequence')}: no sub-sample fits the model's max sequence length "
                       f"{max_len} (the packed dataset's sequenceLength must not exceed it)")
    return {**_model_inputs(kept, tok, vision), "samples": len(kept), "dropped_samples": dropped,
            "sequence": meta.get("sequence")}


def _model_inputs(kept: list[_SubSample], tok: ChatTokenizer, vision: VisionShape) -> dict[str, Any]:
    """Tensors of the kept sub-samples, concatenated: labels are the next token, the loss counts
    answer tokens only (never a sub-sample's first token nor an image position)."""
    ids = torch.tensor([t for s in kept for t in s.ids], dtype=torch.long)
    targets = torch.tensor([t for s in kept for t in [0] + s.targets[1:]], dtype=torch.float32)
    labels = torch.zeros_like(ids)
    labels[:-1] = ids[1:]
    labels[labels == tok.image] = 0
    loss_mask = torch.zeros(ids.numel(), dtype=torch.float32)
    loss_mask[:-1] = targets[1:]
    loss_mask[ids == tok.image] = 0.0  # image positions never predict (the model masks them too)
    positions = torch.tensor([p for s in kept for p in range(s.length)], dtype=torch.long)  # restart per sample
    segments = torch.tensor([s.index for s in kept for _ in range(s.length)], dtype=torch.long)
    patches = [p for s in kept for p in s.patches]
    grids = [g for s in kept for g in s.grids]
    return {
        "input_ids": ids[None],
        "labels": labels[None],
        "loss_mask": loss_mask[None],
        "pixel_values": torch.cat(patches, 0) if patches else torch.zeros(0, 3 * vision.patch ** 2),
        "image_grid_thw": torch.tensor(grids, dtype=torch.long).reshape(-1, 3),  # (t, rows, cols) in patches
        "position_ids": positions,       # combined space, reset per sub-sample
        "segment_ids": segments,         # combined space
        "tokens": int(positions.numel()),
        "target_tokens": int(loss_mask.sum().item()),
    }


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[1, 1, S, S] bool, True = masked: causal within a sub-sample, nothing across."""
    S = segment_ids.numel()
    same = segment_ids[:, None] == segment_ids[None, :]
    causal = torch.ones(S, S, dtype=torch.bool).tril()
    return ~(same & causal)[None, None]


class StepLoader:
    """Yields, for each step from `start_step`, this DP rank's list of micro-batches."""

    def __init__(self, shards: PackedShards, tok: ChatTokenizer, *, seed: int, global_batch: int, dp_size: int,
                 dp_rank: int, vision: VisionShape, max_len: int, prefetch: int = 4):
        self.shards, self.tok = shards, tok
        self.seed, self.G, self.dp, self.r = seed, global_batch, dp_size, dp_rank
        self.vision, self.max_len = vision, max_len
        self.prefetch = prefetch
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        p = self._perms.get(epoch)
        if p is None:
            p = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
            self._perms = {epoch: p}
        return p

    def indices(self, step: int) -> list[int]:
        N = len(self.shards)
        out = []
        for j in range(step * self.G + self.r, (step + 1) * self.G, self.dp):
            out.append(int(self._perm(j // N)[j % N]))
        return out

    def step_batches(self, step: int) -> list[dict[str, Any]]:
        return [build_microbatch(self.shards.read(i), self.tok, self.vision, self.max_len)
                for i in self.indices(step)]

    def iterate(self, start_step: int, end_step: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work():
            try:
                for s in range(start_step, end_step):
                    if stop.is_set():
                        return
                    q.put((s, self.step_batches(s)))
                q.put(None)
            except BaseException as e:  # surface loader errors in the training thread
                q.put(e)

        th = threading.Thread(target=work, daemon=True)
        th.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
