"""Export the `tiny` model as a transformers LLaVA (LlavaForConditionalGeneration: CLIP vision
tower + 2-layer MLP projector + Qwen3 LLM). Collective: every rank calls `gather_full_state`;
rank 0 converts and writes."""
from __future__ import annotations

import os
import shutil
from typing import Any

import torch
import torch.distributed as dist

from vlmops_contract.model_shapes import Preset


def gather_full_state(model) -> dict[str, torch.Tensor]:
    """Unsharded (TP=1 layout) copy of every parameter, on every rank of the TP group."""
    from megatron.core import parallel_state as ps

    tp = ps.get_tensor_model_parallel_world_size()
    group = ps.get_tensor_model_parallel_group()
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        t = p.detach().float().cpu()
        if tp > 1 and getattr(p, "tensor_model_parallel", False):
            dim = p.partition_dim
            parts = [torch.empty_like(t) for _ in range(tp)]
            dist.all_gather(parts, t.contiguous(), group=group)
            if name.startswith("language_model.") and name.endswith("mlp.linear_fc1.weight"):
                # SwiGLU: each rank holds [gate_r; up_r] -> full [gate; up]
                halves = [x.chunk(2, dim=0) for x in parts]
                t = torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
            else:
                t = torch.cat(parts, dim=dim)
        out[name] = t
    return out


def _hf_config(preset: Preset, vocab: int, image_token_id: int):
    from transformers import CLIPVisionConfig, LlavaConfig, Qwen3Config

    L, V = preset.language, preset.vision
    text = Qwen3Config(
        vocab_size=vocab, hidden_size=L.hidden_size, intermediate_size=L.ffn_hidden_size,
        num_hidden_layers=L.num_layers, num_attention_heads=L.num_heads, num_key_value_heads=L.num_query_groups,
        head_dim=L.head_dim, rms_norm_eps=L.norm_eps, rope_theta=L.rope_base,
        max_position_embeddings=L.max_sequence_length, tie_word_embeddings=L.tie_embeddings, attention_bias=False,
        hidden_act="silu",
    )
    vision = CLIPVisionConfig(
        hidden_size=V.hidden_size, intermediate_size=V.ffn_hidden_size, num_hidden_layers=V.num_layers,
        num_attention_heads=V.num_heads, image_size=V.tile, patch_size=V.patch, hidden_act="gelu",
        layer_norm_eps=1e-5, num_channels=3,
    )
    cfg = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_token_id, projector_hidden_act="gelu",
        vision_feature_select_strategy="default", vision_feature_layer=-1,
        image_seq_length=V.tokens_per_tile, multimodal_projector_bias=True, tie_word_embeddings=L.tie_embeddings,
    )
    cfg.image_token_id = image_token_id  # transformers >= 4.48 name; image_token_index is the older one
    cfg.image_token_index = image_token_id
    return cfg


def _parts(hf):
    """(language Qwen3Model, vision CLIPVisionModel, projector, lm_head) across transformers layouts."""
    inner = getattr(hf, "model", None)
    if inner is not None and hasattr(inner, "language_model"):
        return inner.language_model, inner.vision_tower, inner.multi_modal_projector, hf.lm_head
    lm = hf.language_model
    return lm.model, hf.vision_tower, hf.multi_modal_projector, lm.lm_head


def to_hf(full: dict[str, torch.Tensor], preset: Preset, vocab: int, image_token_id: int):
    from transformers import LlavaForConditionalGeneration

    if not preset.hf_exportable:
        raise ValueError(f"preset {preset.name} has no transformers LLaVA equivalent")
    cfg = _hf_config(preset, vocab, image_token_id)
    hf = LlavaForConditionalGeneration(cfg).float().eval()
    lm, vt, proj, head = _parts(hf)
    L, V = preset.language, preset.vision
    g = full.__getitem__

    def cp(dst: torch.Tensor, src: torch.Tensor):
        assert dst.shape == src.shape, (dst.shape, src.shape)
        with torch.no_grad():
            dst.copy_(src)

    # ---- language (Qwen3)
    cp(lm.embed_tokens.weight, g("language_model.embedding.word_embeddings.weight"))
    d, G, qpg = L.head_dim, L.num_query_groups, L.num_heads // L.num_query_groups
    for i, layer in enumerate(lm.layers):
        pre = f"language_model.decoder.layers.{i}."
        cp(layer.input_layernorm.weight, g(pre + "input_layernorm.weight"))
        qkv = g(pre + "self_attention.linear_qkv.weight").view(G, (qpg + 2) * d, L.hidden_size)
        cp(layer.self_attn.q_proj.weight, qkv[:, : qpg * d].reshape(-1, L.hidden_size))
        cp(layer.self_attn.k_proj.weight, qkv[:, qpg * d: (qpg + 1) * d].reshape(-1, L.hidden_size))
        cp(layer.self_attn.v_proj.weight, qkv[:, (qpg + 1) * d:].reshape(-1, L.hidden_size))
        cp(layer.self_attn.q_norm.weight, g(pre + "self_attention.q_layernorm.weight"))
        cp(layer.self_attn.k_norm.weight, g(pre + "self_attention.k_layernorm.weight"))
        cp(layer.self_attn.o_proj.weight, g(pre + "self_attention.linear_proj.weight"))
        cp(layer.post_attention_layernorm.weight, g(pre + "pre_mlp_layernorm.weight"))
        gate, up = g(pre + "mlp.linear_fc1.weight").chunk(2, dim=0)
        cp(layer.mlp.gate_proj.weight, gate)
        cp(layer.mlp.up_proj.weight, up)
        cp(layer.mlp.down_proj.weight, g(pre + "mlp.linear_fc2.weight"))
    cp(lm.norm.weight, g("language_model.decoder.final_layernorm.weight"))
    if not L.tie_embeddings:
        cp(head.weight, g("language_model.output_layer.weight"))

    # ---- vision (CLIP)
    vm = getattr(vt, "vision_model", vt)
    h, nh = V.hidden_size, V.num_heads
    hd = h // nh
    cp(vm.embeddings.patch_embedding.weight, g("vision_model.conv1.weight"))
    cp(vm.embeddings.class_embedding, g("vision_model.class_token").reshape(-1))
    cp(vm.embeddings.position_embedding.weight, g("vision_model.position_embeddings.weight"))
    cp(vm.pre_layrnorm.weight, g("vision_model.ln_pre.weight"))
    cp(vm.pre_layrnorm.bias, g("vision_model.ln_pre.bias"))
    for i, layer in enumerate(vm.encoder.layers):
        pre = f"vision_model.decoder.layers.{i}."
        cp(layer.layer_norm1.weight, g(pre + "input_layernorm.weight"))
        cp(layer.layer_norm1.bias, g(pre + "input_layernorm.bias"))
        w = g(pre + "self_attention.linear_qkv.weight").view(nh, 3, hd, h)
        b = g(pre + "self_attention.linear_qkv.bias").view(nh, 3, hd)
        for j, lin in enumerate((layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)):
            cp(lin.weight, w[:, j].reshape(h, h))
            cp(lin.bias, b[:, j].reshape(h))
        cp(layer.self_attn.out_proj.weight, g(pre + "self_attention.linear_proj.weight"))
        cp(layer.self_attn.out_proj.bias, g(pre + "self_attention.linear_proj.bias"))
        cp(layer.layer_norm2.weight, g(pre + "pre_mlp_layernorm.weight"))
        cp(layer.layer_norm2.bias, g(pre + "pre_mlp_layernorm.bias"))
        cp(layer.mlp.fc1.weight, g(pre + "mlp.linear_fc1.weight"))
        cp(layer.mlp.fc1.bias, g(pre + "mlp.linear_fc1.bias"))
        cp(layer.mlp.fc2.weight, g(pre + "mlp.linear_fc2.weight"))
        cp(layer.mlp.fc2.bias, g(pre + "mlp.linear_fc2.bias"))

    # ---- projector
    cp(proj.linear_1.weight, g("vision_projection.encoder.linear_fc1.weight"))
    cp(proj.linear_1.bias, g("vision_projection.encoder.linear_fc1.bias"))
    cp(proj.linear_2.weight, g("vision_projection.encoder.linear_fc2.weight"))
    cp(proj.linear_2.bias, g("vision_projection.encoder.linear_fc2.bias"))
    return hf


def export(model, preset: Preset, vocab: int, image_token_id: int, tokenizer_dir: str | None,
           out_uri: str) -> dict[str, str] | None:
    """Collective. Rank 0 writes the HF dir to `out_uri`; returns {relpath: digest} there, else None."""
    import tempfile

    from ..common import storage

    full = gather_full_state(model)
    if dist.get_rank() != 0:
        return None
    hf = to_hf(full, preset, vocab, image_token_id)
    tmp = tempfile.mkdtemp(prefix="vlmops-hf-")
    try:
        hf.save_pretrained(tmp, safe_serialization=True)
        if tokenizer_dir and os.path.isdir(tokenizer_dir):
            for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                if os.path.exists(os.path.join(tokenizer_dir, fn)):
                    shutil.copy(os.path.join(tokenizer_dir, fn), os.path.join(tmp, fn))
            save_processor(tmp, hf.config)
        digests: dict[str, str] = {}
        for fn in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, fn), "rb") as f:
                data = f.read()
            digests[fn] = storage.write_bytes_atomic(storage.join(out_uri, fn), data)
        return digests
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_processor(directory: str, config) -> None:
    """A `LlavaProcessor` next to the weights, so `llava_hf` (lmms-eval) and `AutoProcessor` load
    the export: one tile per image at the ViT's size, CLIP normalisation as in training
    (training tiles large images; a single-tile resize is what the HF processor can express)."""
    from transformers import AutoTokenizer, CLIPImageProcessor, LlavaProcessor

    from .data import CLIP_MEAN, CLIP_STD

    vc = config.vision_config
    tok = AutoTokenizer.from_pretrained(directory)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": vc.image_size}, crop_size={"height": vc.image_size, "width": vc.image_size},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    LlavaProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=vc.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        image_token=tok.convert_ids_to_tokens(config.image_token_index),
        num_additional_image_tokens=1, chat_template=tok.chat_template,
    ).save_pretrained(directory)


def megatron_input_to_hf(input_ids: torch.Tensor, num_image_tiles: torch.Tensor, image_token_id: int,
                         tokens_per_tile: int) -> torch.Tensor:
    """Megatron convention (one image id per image) -> HF LLaVA (one image id per image token)."""
    out: list[int] = []
    k = 0
    for t in input_ids.reshape(-1).tolist():
        if t == image_token_id:
            out += [image_token_id] * int(num_image_tiles[k]) * tokens_per_tile
            k += 1
        else:
            out.append(t)
    return torch.tensor(out, dtype=torch.long)[None]


def describe(full: dict[str, Any]) -> int:
    return sum(v.numel() for v in full.values())
