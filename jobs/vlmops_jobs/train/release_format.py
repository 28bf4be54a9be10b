"""The released LLaVA-OneVision-1.5 checkpoint format <-> the trainer's megatron parameters.

One table (`_pairs`) names every megatron parameter (TP=1 layout) and the HF tensor(s) it is made
of, with the two conversions; export and import both walk it, so they cannot disagree.

- export: every rank gathers full tensors (collective), rank 0 converts and writes safetensors,
  `config.json` (architecture, auto_map), the modeling code (`hf_release/`), tokenizer and processor.
- import: every rank reads, tensor by tensor, only the HF tensors its own parameters need and keeps
  only its TP shard: an 8B snapshot is never held whole in one process.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.distributed as dist

from vlmops_contract.model_shapes import Preset

ARCHITECTURE = "LLaVAOneVision1_5_ForConditionalGeneration"
MODEL_TYPE = "llavaonevision1_5"
CODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_release")
CODE_FILES = ("configuration_llavaonevision1_5.py", "modeling_llavaonevision1_5.py")
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
# Qwen2-VL's image processor, as the release saves it (patch 14, merge 2, one frame per patch)
MIN_PIXELS, MAX_PIXELS = 3136, 2_560_000


@dataclass(frozen=True)
class Pair:
    megatron: str
    hf: tuple[str, ...]
    to_hf: Callable[..., tuple[torch.Tensor, ...]]     # megatron tensor -> HF tensors
    from_hf: Callable[..., torch.Tensor]               # HF tensors -> megatron tensor


def _same(name_m: str, name_h: str) -> Pair:
    return Pair(name_m, (name_h,), lambda t: (t,), lambda t: t)


def _pairs(preset: Preset, tied: bool) -> list[Pair]:
    V, L = preset.vision, preset.language
    P, hv = V.patch, V.hidden_size
    out = [
        Pair("vision_model.patch_embed.weight", ("visual.patch_embed.proj.weight",),
             lambda t: (t.reshape(hv, 3, P, P),), lambda t: t.reshape(hv, 3 * P * P)),
        _same("vision_model.class_embedding", "visual.class_embedding"),
        _same("vision_model.class_pos_emb", "visual.class_pos_emb"),
    ]
    out += [_same(f"vision_model.pre_layernorm.{w}", f"visual.pre_layernorm.{w}") for w in ("weight", "bias")]
    H, d = V.num_heads, V.head_dim
    # megatron fuses qkv per head ([q_h; k_h; v_h]); the release's fused qkv is [q; k; v]
    qkv_to_hf = lambda t: (t.reshape(H, 3, d, *t.shape[1:]).transpose(0, 1).reshape(t.shape),)  # noqa: E731
    qkv_from_hf = lambda t: t.reshape(3, H, d, *t.shape[1:]).transpose(0, 1).reshape(t.shape)  # noqa: E731
    for i in range(V.num_layers):
        m, h = f"vision_model.decoder.layers.{i}.", f"visual.blocks.{i}."
        for w in ("weight", "bias"):
            out += [_same(m + f"input_layernorm.{w}", h + f"norm1.{w}"),
                    Pair(m + f"self_attention.linear_qkv.{w}", (h + f"attn.qkv.{w}",), qkv_to_hf, qkv_from_hf),
                    _same(m + f"self_attention.linear_proj.{w}", h + f"attn.proj.{w}"),
                    _same(m + f"pre_mlp_layernorm.{w}", h + f"norm2.{w}"),
                    _same(m + f"mlp.linear_fc1.{w}", h + f"mlp.fc1.{w}"),
                    _same(m + f"mlp.linear_fc2.{w}", h + f"mlp.fc2.{w}")]
    for w in ("weight", "bias"):
        out += [_same(f"vision_projection.ln_q.{w}", f"visual.merger.ln_q.{w}"),
                _same(f"vision_projection.projection.encoder.linear_fc1.{w}", f"visual.merger.mlp.0.{w}"),
                _same(f"vision_projection.projection.encoder.linear_fc2.{w}", f"visual.merger.mlp.2.{w}")]
    G, qpg, dl, hl = L.num_query_groups, L.num_heads // L.num_query_groups, L.head_dim, L.hidden_size

    def lm_qkv_to_hf(t):
        g = t.view(G, (qpg + 2) * dl, hl)
        return (g[:, : qpg * dl].reshape(-1, hl), g[:, qpg * dl: (qpg + 1) * dl].reshape(-1, hl),
                g[:, (qpg + 1) * dl:].reshape(-1, hl))

    def lm_qkv_from_hf(q, k, v):
        return torch.cat([q.view(G, qpg * dl, hl), k.view(G, dl, hl), v.view(G, dl, hl)], 1).reshape(-1, hl)

    out.append(_same("language_model.embedding.word_embeddings.weight", "model.embed_tokens.weight"))
    for i in range(L.num_layers):
        m, h = f"language_model.decoder.layers.{i}.", f"model.layers.{i}."
        out += [
            _same(m + "input_layernorm.weight", h + "input_layernorm.weight"),
            Pair(m + "self_attention.linear_qkv.weight", tuple(h + f"self_attn.{x}_proj.weight" for x in "qkv"),
                 lm_qkv_to_hf, lm_qkv_from_hf),
            _same(m + "self_attention.q_layernorm.weight", h + "self_attn.q_norm.weight"),
            _same(m + "self_attention.k_layernorm.weight", h + "self_attn.k_norm.weight"),
            _same(m + "self_attention.linear_proj.weight", h + "self_attn.o_proj.weight"),
            _same(m + "pre_mlp_layernorm.weight", h + "post_attention_layernorm.weight"),
            Pair(m + "mlp.linear_fc1.weight", (h + "mlp.gate_proj.weight", h + "mlp.up_proj.weight"),
                 lambda t: tuple(t.chunk(2, 0)), lambda g, u: torch.cat([g, u], 0)),
            _same(m + "mlp.linear_fc2.weight", h + "mlp.down_proj.weight"),
        ]
    out.append(_same("language_model.decoder.final_layernorm.weight", "model.norm.weight"))
    if not tied:
        out.append(_same("language_model.output_layer.weight", "lm_head.weight"))
    return out


def hf_config(preset: Preset, vocab: int, image_token_id: int, extra: dict | None = None) -> dict:
    """config.json in the release's format (keys of the released 4B/8B configs)."""
    V, L = preset.vision, preset.language
    text = {
        "model_type": "LLaVAOneVision1_5_text", "vocab_size": vocab, "hidden_size": L.hidden_size,
        "intermediate_size": L.ffn_hidden_size, "num_hidden_layers": L.num_layers,
        "num_attention_heads": L.num_heads, "num_key_value_heads": L.num_query_groups, "head_dim": L.head_dim,
        "hidden_act": "silu", "max_position_embeddings": L.max_position_embeddings, "rms_norm_eps": L.norm_eps,
        "rope_theta": L.rope_base, "tie_word_embeddings": L.tie_embeddings, "attention_bias": False,
        "attention_dropout": 0.0, "use_sliding_window": False, "sliding_window": None,
        "max_window_layers": L.num_layers, "initializer_range": 0.02, "use_cache": True,
    }
    vision = {
        "model_type": "rice_vit", "depth": V.num_layers, "embed_dim": V.hidden_size, "hidden_size": V.hidden_size,
        "hidden_act": "gelu", "intermediate_size": V.ffn_hidden_size, "num_heads": V.num_heads, "in_channels": 3,
        "patch_size": V.patch, "spatial_merge_size": V.merge, "temporal_patch_size": 1,
        "initializer_range": 0.02, "layer_norm_eps": V.norm_eps, "text_hidden_size": L.hidden_size,
    }
    return {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE,
        "auto_map": {"AutoConfig": "configuration_llavaonevision1_5.Llavaonevision1_5Config",
                     "AutoModel": f"modeling_llavaonevision1_5.{ARCHITECTURE}",
                     "AutoModelForCausalLM": f"modeling_llavaonevision1_5.{ARCHITECTURE}"},
        "text_config": text, "vision_config": vision, "image_token_id": image_token_id,
        "video_token_id": None, "vocab_size": vocab,
        "tie_word_embeddings": L.tie_embeddings, "torch_dtype": "float32", **(extra or {}),
    }


def preset_from_hf_config(cfg: dict, name: str = "hf") -> Preset:
    """The shapes a release-format config.json describes (to check an import against the stage's model)."""
    from vlmops_contract.model_shapes import LanguageShape, VisionShape

    t, v = cfg["text_config"], cfg["vision_config"]
    rope = t.get("rope_theta") or (t.get("rope_parameters") or {}).get("rope_theta") or 1_000_000.0
    return Preset(name=name, vision=VisionShape(
        num_layers=v["depth"], hidden_size=v["hidden_size"], num_heads=v["num_heads"],
        ffn_hidden_size=v["intermediate_size"], patch=v["patch_size"], merge=v["spatial_merge_size"],
        norm_eps=v.get("layer_norm_eps", 1e-5)), language=LanguageShape(
        num_layers=t["num_hidden_layers"], hidden_size=t["hidden_size"], num_heads=t["num_attention_heads"],
        num_query_groups=t.get("num_key_value_heads") or t["num_attention_heads"],
        head_dim=t.get("head_dim") or t["hidden_size"] // t["num_attention_heads"],
        ffn_hidden_size=t["intermediate_size"], vocab_size=t["vocab_size"], max_sequence_length=0,
        rope_base=float(rope), norm_eps=t.get("rms_norm_eps", 1e-6),
        tie_embeddings=bool(t.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False)))))


# ---------------------------------------------------------------------------------------------
# TP shards
# ---------------------------------------------------------------------------------------------
def tp_shard(name: str, full: torch.Tensor, param: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """This TP rank's part of a full (TP=1) tensor, as megatron lays it out."""
    if size == 1 or not getattr(param, "tensor_model_parallel", False):
        return full
    dim = param.partition_dim
    if _swiglu(name):  # each rank holds [gate_r; up_r]
        gate, up = full.chunk(2, 0)
        return torch.cat([gate.chunk(size, 0)[rank], up.chunk(size, 0)[rank]], 0)
    return full.chunk(size, dim)[rank]


def _swiglu(name: str) -> bool:
    return name.startswith("language_model.") and name.endswith("mlp.linear_fc1.weight")


def gather_param(name: str, p: torch.Tensor) -> torch.Tensor:
    """The full (TP=1 layout) tensor of one parameter, in its own dtype, on every rank of the TP group
    (collective)."""
    from megatron.core import parallel_state as ps

    t = p.detach().cpu()
    tp = ps.get_tensor_model_parallel_world_size()
    if tp == 1 or not getattr(p, "tensor_model_parallel", False):
        return t
    parts = [torch.empty_like(t) for _ in range(tp)]
    dist.all_gather(parts, t.contiguous(), group=ps.get_tensor_model_parallel_group())
    if _swiglu(name):
        halves = [x.chunk(2, 0) for x in parts]
        return torch.cat([h[0] for h in halves] + [h[1] for h in halves], 0)
    return torch.cat(parts, p.partition_dim)


def gather_full_state(model) -> dict[str, torch.Tensor]:
    """Every parameter gathered (collective); for tests and small models: export streams instead."""
    return {name: gather_param(name, p).float() for name, p in _named(model)}


def _named(model) -> Iterator[tuple[str, torch.Tensor]]:
    m = getattr(model, "module", model)
    return m.named_parameters()


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
def to_release(full: dict[str, torch.Tensor], preset: Preset) -> dict[str, torch.Tensor]:
    tied = preset.language.tie_embeddings
    out: dict[str, torch.Tensor] = {}
    pairs = _pairs(preset, tied)
    missing = sorted(set(full) - {p.megatron for p in pairs})
    if missing:
        raise ValueError(f"parameters with no release-format name: {missing[:5]}")
    for p in pairs:
        for k, t in zip(p.hf, p.to_hf(full[p.megatron])):
            out[k] = t.contiguous().clone()
    return out


class ShardWriter:
    """Safetensors files of at most `shard_bytes` each, written as tensors arrive, plus the index the
    released checkpoints use (one `model.safetensors` when everything fits in one)."""

    def __init__(self, directory: str, shard_bytes: int):
        self.dir, self.limit = directory, shard_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.size, self.total, self.files, self.where = 0, 0, [], {}

    def add(self, name: str, t: torch.Tensor) -> None:
        n = t.numel() * t.element_size()
        if self.pending and self.size + n > self.limit:
            self._flush()
        self.pending[name] = t
        self.size += n
        self.total += n

    def _flush(self) -> None:
        from safetensors.torch import save_file

        fn = f"part-{len(self.files):05d}.safetensors"
        save_file(self.pending, os.path.join(self.dir, fn), metadata={"format": "pt"})
        self.files.append(fn)
        self.where.update({k: fn for k in self.pending})
        self.pending, self.size = {}, 0

    def close(self) -> None:
        if self.pending or not self.files:
            self._flush()
        if len(self.files) == 1:
            os.rename(os.path.join(self.dir, self.files[0]), os.path.join(self.dir, WEIGHTS))
            return
        n = len(self.files)
        names = {fn: f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i, fn in enumerate(self.files)}
        for old, new in names.items():
            os.rename(os.path.join(self.dir, old), os.path.join(self.dir, new))
        index = {"metadata": {"total_size": self.total}, "weight_map": {k: names[v] for k, v in sorted(self.where.items())}}
        with open(os.path.join(self.dir, INDEX), "w") as f:
            json.dump(index, f, indent=2)


def write_config_and_code(directory: str, config: dict) -> None:
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    for fn in CODE_FILES:
        shutil.copy(os.path.join(CODE_DIR, fn), os.path.join(directory, fn))


def write_release(directory: str, tensors: dict[str, torch.Tensor], config: dict,
                  shard_bytes: int = 2 * 1024 ** 3) -> None:
    """A release-format directory from in-memory tensors (tests, small models)."""
    w = ShardWriter(directory, shard_bytes)
    for k, t in tensors.items():
        w.add(k, t)
    w.close()
    write_config_and_code(directory, config)


def export(model, preset: Preset, vocab: int, image_token_id: int, tokenizer_dir: str | None,
           out_uri: str, shard_bytes: int = 2 * 1024 ** 3) -> dict[str, str] | None:
    """Collective. Parameters are gathered one at a time; rank 0 converts each and writes it into
    safetensors shards of at most `shard_bytes` (an 8B model never whole in memory), then the config,
    modeling code, tokenizer and processor, and uploads the directory to `out_uri`. Returns
    {relpath: digest} on rank 0, else None."""
    import tempfile

    from ..common import storage

    rank0 = dist.get_rank() == 0
    tmp = tempfile.mkdtemp(prefix="vlmops-hf-") if rank0 else None
    try:
        params = dict(_named(model))
        pairs = _pairs(preset, preset.language.tie_embeddings)
        missing = sorted(set(params) - {p.megatron for p in pairs})
        if missing:
            raise ValueError(f"parameters with no release-format name: {missing[:5]}")
        writer = ShardWriter(tmp, shard_bytes) if rank0 else None
        dtype = next(iter(params.values())).dtype
        for p in pairs:
            full = gather_param(p.megatron, params[p.megatron])  # every rank takes part
            if writer:
                for k, t in zip(p.hf, p.to_hf(full)):
                    writer.add(k, t.contiguous().clone())
        if not rank0:
            return None
        writer.close()
        extra = save_processor(tmp, tokenizer_dir, preset) if tokenizer_dir and os.path.isdir(tokenizer_dir) else {}
        config = hf_config(preset, vocab, image_token_id, extra)
        config["torch_dtype"] = str(dtype).removeprefix("torch.")
        write_config_and_code(tmp, config)
        digests: dict[str, str] = {}
        for fn in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, fn), "rb") as f:
                data = f.read()
            digests[fn] = storage.write_bytes_atomic(storage.join(out_uri, fn), data)
        return digests
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def save_processor(directory: str, tokenizer_dir: str, preset: Preset) -> dict:
    """The release's processor (Qwen2.5-VL processor: Qwen2-VL image processor with one frame per patch,
    the packer's smart-resize bounds, CLIP normalisation) around the stage's tokenizer; the tokenizer's
    image token is the processor's. Returns the token ids config.json records."""
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from .data import CLIP_MEAN, CLIP_STD

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = tok.get_vocab()
    image_token = getattr(tok, "image_token", None) or ("<|image_pad|>" if "<|image_pad|>" in vocab else "<image>")
    special = {"image_token": image_token}
    video_token = getattr(tok, "video_token", None) or ("<|video_pad|>" if "<|video_pad|>" in vocab else None)
    if video_token:  # without one the processor takes no videos (the trainer feeds images only)
        special["video_token"] = video_token
    # saved in tokenizer_config.json, so the processor finds them again when loaded
    tok = AutoTokenizer.from_pretrained(tokenizer_dir, extra_special_tokens=special)
    ip = Qwen2VLImageProcessor(patch_size=preset.vision.patch, merge_size=preset.vision.merge, temporal_patch_size=1,
                               min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, image_mean=list(CLIP_MEAN),
                               image_std=list(CLIP_STD))
    vp = Qwen2VLVideoProcessor(patch_size=preset.vision.patch, merge_size=preset.vision.merge, temporal_patch_size=1,
                               image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                        chat_template=tok.chat_template).save_pretrained(directory)
    return {"video_token_id": tok.convert_tokens_to_ids(video_token) if video_token else None}


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------
class ReleaseReader:
    """Tensors of a release-format snapshot directory, one at a time (safetensors, memory-mapped)."""

    def __init__(self, directory: str):
        self.dir = directory
        idx = os.path.join(directory, INDEX)
        if os.path.exists(idx):
            with open(idx) as f:
                self.where = json.load(f)["weight_map"]
        elif os.path.exists(os.path.join(directory, WEIGHTS)):
            from safetensors import safe_open

            with safe_open(os.path.join(directory, WEIGHTS), "pt") as f:
                self.where = {k: WEIGHTS for k in f.keys()}
        else:
            raise FileNotFoundError(f"{directory}: no {WEIGHTS} or {INDEX}")
        with open(os.path.join(directory, "config.json")) as f:
            self.config = json.load(f)
        self._open: dict[str, object] = {}

    def get(self, key: str) -> torch.Tensor:
        from safetensors import safe_open

        if key not in self.where:
            raise KeyError(f"{self.dir}: tensor {key} not in the snapshot")
        fn = self.where[key]
        if fn not in self._open:
            self._open[fn] = safe_open(os.path.join(self.dir, fn), "pt")
        return self._open[fn].get_tensor(key)


def load_into(model, reader: ReleaseReader, preset: Preset, tp_rank: int = 0, tp_size: int = 1,
              progress: Callable[[int, int], None] | None = None) -> int:
    """Copy a release-format snapshot into `model` (this TP rank's shards); returns tensors read.
    Vocab rows beyond the snapshot's (padding) keep their initial values."""
    params = dict(_named(model))
    pairs = [p for p in _pairs(preset, preset.language.tie_embeddings) if p.megatron in params]
    unknown = sorted(set(params) - {p.megatron for p in pairs})
    if unknown:
        raise ValueError(f"parameters the release format does not hold: {unknown[:5]}")
    read = 0
    for n, p in enumerate(pairs):
        full = p.from_hf(*(reader.get(k).float() for k in p.hf))
        read += len(p.hf)
        param = params[p.megatron]
        if p.megatron.endswith(("word_embeddings.weight", "output_layer.weight")) and full.shape[0] != _rows(param, tp_size):
            full = _pad_rows(full, _rows(param, tp_size))
        shard = tp_shard(p.megatron, full, param, tp_rank, tp_size)
        if shard.shape != param.shape:
            raise ValueError(f"{p.megatron}: snapshot gives {tuple(shard.shape)}, the model has {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(shard.to(param.dtype))
        if progress:
            progress(n + 1, len(pairs))
    return read


def _rows(param: torch.Tensor, tp_size: int) -> int:
    return param.shape[0] * (tp_size if getattr(param, "tensor_model_parallel", False) else 1)


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] > rows:
        raise ValueError(f"snapshot vocab {t.shape[0]} > model vocab {rows}")
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])], 0)


def snapshot_digest(directory: str) -> str:
    """A digest naming the snapshot: config.json plus each weight file's name and size (lineage;
    hashing 16 GB of weights at every start would cost minutes)."""
    import hashlib

    h = hashlib.sha256()
    for fn in sorted(os.listdir(directory)):
        if fn == "config.json" or re.fullmatch(r".*\.safetensors(\.index\.json)?", fn):
            path = os.path.join(directory, fn)
            h.update(f"{fn}:{os.path.getsize(path)}\n".encode())
            if fn.endswith(".json"):
                with open(path, "rb") as f:
                    h.update(f.read())
    return "sha256:" + h.hexdigest()
