"""megatron-core LLaVAModel from a preset, plus the packed-sequence forward step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import cpu_compat
from .data import block_causal_mask
from vlmops_contract.model_shapes import Preset


@dataclass(frozen=True)
class Parallel:
    tensor: int = 1
    pipeline: int = 1
    context: int = 1
    sequence_parallel: bool = False
    recompute: str = "none"  # none | selective | full
    bf16: bool = False


def _configs(preset: Preset, par: Parallel):
    from megatron.core.transformer.transformer_config import TransformerConfig

    cpu = cpu_compat.needed()
    common = dict(
        tensor_model_parallel_size=par.tensor,
        pipeline_model_parallel_size=par.pipeline,
        context_parallel_size=par.context,
        sequence_parallel=par.sequence_parallel,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        use_cpu_initialization=cpu,
        bf16=par.bf16,
        params_dtype=torch.bfloat16 if par.bf16 else torch.float32,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
    )
    if par.recompute == "full":
        common.update(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)
    elif par.recompute == "selective":
        common.update(recompute_granularity="selective")
    L, V = preset.language, preset.vision
    lm = TransformerConfig(
        num_layers=L.num_layers, hidden_size=L.hidden_size, num_attention_heads=L.num_heads,
        num_query_groups=L.num_query_groups, kv_channels=L.head_dim, ffn_hidden_size=L.ffn_hidden_size,
        normalization="RMSNorm", layernorm_epsilon=L.norm_eps, gated_linear_unit=True, activation_func=F.silu,
        add_bias_linear=False, add_qkv_bias=False, qk_layernorm=True, **common,
    )
    vis = TransformerConfig(
        num_layers=V.num_layers, hidden_size=V.hidden_size, num_attention_heads=V.num_heads,
        ffn_hidden_size=V.ffn_hidden_size, kv_channels=V.hidden_size // V.num_heads,
        normalization="LayerNorm", layernorm_epsilon=1e-5, gated_linear_unit=False, activation_func=F.gelu,
        add_bias_linear=True, add_qkv_bias=True, **{**common, "sequence_parallel": False, "context_parallel_size": 1},
    )
    vis.vision_model_type = "clip"
    proj = TransformerConfig(
        num_layers=1, hidden_size=L.hidden_size, num_attention_heads=L.num_heads,
        ffn_hidden_size=preset.projector_ffn, normalization="LayerNorm", gated_linear_unit=False,
        activation_func=F.gelu, add_bias_linear=True, **{**common, "sequence_parallel": False,
                                                         "context_parallel_size": 1, "recompute_granularity": None},
    )
    return lm, vis, proj


def build_model(preset: Preset, vocab: int, image_token_id: int, par: Parallel):
    """LLaVAModel (vision CLIP ViT + MLP projector + GPT/Qwen3-style LLM). Call after
    parallel_state.initialize_model_parallel and cpu_compat.seed_rng."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.models.multimodal.llava_model import LLaVAModel
    from megatron.core.models.vision.vit_layer_specs import get_vit_layer_with_local_spec
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
    from megatron.core.transformer.mlp import MLPSubmodules

    cpu_compat.apply()
    lm_cfg, vis_cfg, proj_cfg = _configs(preset, par)
    lm_spec = get_gpt_layer_local_spec(qk_layernorm=True, normalization="RMSNorm")
    vis_spec = get_vit_layer_with_local_spec()
    proj_spec = MLPSubmodules(linear_fc1=ColumnParallelLinear, linear_fc2=RowParallelLinear)
    V, L = preset.vision, preset.language
    model = LLaVAModel(
        language_transformer_config=lm_cfg,
        language_transformer_layer_spec=lm_spec,
        language_vocab_size=vocab,
        language_max_sequence_length=L.max_sequence_length,
        vision_transformer_config=vis_cfg,
        vision_transformer_layer_spec=vis_spec,
        drop_vision_class_token=True,
        vision_projection_config=proj_cfg,
        vision_projection_layer_spec=proj_spec,
        vision_projection_type="mlp",
        parallel_output=True,
        share_embeddings_and_output_weights=L.tie_embeddings,
        language_position_embedding_type="rope",
        language_rotary_base=int(L.rope_base),
        img_h=V.tile,
        img_w=V.tile,
        patch_dim=V.patch,
        image_token_index=image_token_id,
        pixel_shuffle=V.pixel_shuffle,
    )
    install_packed_rope(model)
    if par.bf16:
        # What megatron's Float16Module does: modules built outside the TransformerConfig's
        # params_dtype (the ViT's conv1 and position embedding) would otherwise stay fp32.
        model = model.to(torch.bfloat16)
    return model


class _PackedRope:
    """Replaces GPTModel.rotary_pos_emb's forward: RoPE angles from explicit position ids that
    restart at 0 for every sub-sample of a packed sequence (HF/Qwen `rotate_half` layout)."""

    def __init__(self, rope):
        self.rope = rope
        self.positions: torch.Tensor | None = None

    def __call__(self, max_seq_len: int, offset: int = 0, packed_seq: bool = False, cp_group=None):
        inv = self.rope.inv_freq
        if self.positions is None:
            pos = torch.arange(max_seq_len, device=inv.device, dtype=inv.dtype) + offset
        else:
            pos = self.positions[:max_seq_len].to(device=inv.device, dtype=inv.dtype)
        freqs = torch.outer(pos, inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb[:, None, None, :]


def install_packed_rope(model) -> None:
    lm = model.language_model
    if lm is not None and getattr(lm, "rotary_pos_emb", None) is not None:
        if not isinstance(getattr(lm.rotary_pos_emb, "forward", None), _PackedRope):
            lm.rotary_pos_emb.forward = _PackedRope(lm.rotary_pos_emb)


def set_positions(model, positions: torch.Tensor | None) -> None:
    lm = model.language_model
    lm.rotary_pos_emb.forward.positions = positions


def unwrap(model):
    return getattr(model, "module", model)


def image_features(m, images: torch.Tensor) -> torch.Tensor:
    """Vision tower + merge + projector, as LLaVAModel composes them: [tiles, tokens_per_tile, h_lm]."""
    from megatron.core.models.multimodal.llava_model import pixel_shuffle

    x = m.vision_model(images)  # [tiles, patches(+class), h_vision]
    if m._drop_vision_class_token:
        x = x[:, m.vision_model.class_token_len:, :]
    if m._pixel_shuffle:
        x = pixel_shuffle(x)  # 2x2 merge, raster order of the merged cells
    x = m.vision_projection(x.permute(1, 0, 2).contiguous())  # [tokens_per_tile, tiles, h_lm]
    return x.permute(1, 0, 2)


def select_cells(feats: torch.Tensor, grid: tuple[int, int, int, int]) -> torch.Tensor:
    """One image's tile features [th*tw, s*s, h] -> its gh x gw grid cells in raster order [gh*gw, h].
    Tiles pad the resized image up to whole tiles; the padding cells are dropped, so an image
    feeds the LLM exactly the token count the packer planned (pack.token_lengths.image_tokens)."""
    gh, gw, th, tw = grid
    n, cells, h = feats.shape
    s = int(round(cells ** 0.5))
    x = feats.reshape(th, tw, s, s, h).permute(0, 2, 1, 3, 4).reshape(th * s, tw * s, h)
    return x[:gh, :gw].reshape(gh * gw, h)


def forward_step(model, mb: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (sum of masked per-token losses, number of loss tokens) for one packed sequence.

    LLaVAModel's own composition gives every image tiles x tokens_per_tile tokens; here each image
    gives exactly its grid's cells (the packer's count), so packed lengths hold for every preset."""
    m = unwrap(model)
    set_positions(m, mb["position_ids"].to(device))
    mask = block_causal_mask(mb["segment_ids"]).to(device)
    dtype = next(m.parameters()).dtype
    ids = mb["input_ids"][0].to(device)
    labels, lmask = mb["labels"][0].to(device), mb["loss_mask"][0].to(device)
    text = ids.clone()
    is_img = ids == m.image_token_index
    text[is_img] = 0
    emb = m.language_model.embedding(input_ids=text[None], position_ids=None)  # [T, 1, h]
    images = mb["images"]
    feats = image_features(m, images.to(device=device, dtype=dtype)) if images.shape[0] else None
    pieces, lab, msk = [], [], []
    start, tile0 = 0, 0
    img_pos = torch.nonzero(is_img).flatten().tolist()
    for k, p in enumerate(img_pos):
        pieces.append(emb[start:p])
        lab.append(labels[start:p])
        msk.append(lmask[start:p])
        gh, gw, th, tw = (int(v) for v in mb["image_grids"][k])
        cells = select_cells(feats[tile0: tile0 + th * tw], (gh, gw, th, tw))
        tile0 += th * tw
        pieces.append(cells[:, None, :].to(emb.dtype))
        lab.append(torch.zeros(cells.shape[0], dtype=labels.dtype, device=device))
        msk.append(torch.zeros(cells.shape[0], dtype=lmask.dtype, device=device))
        start = p + 1
    pieces.append(emb[start:])
    lab.append(labels[start:])
    msk.append(lmask[start:])
    combined = torch.cat(pieces, 0)
    labels_c, loss_mask = torch.cat(lab)[None], torch.cat(msk)[None].float()
    out = m.language_model(input_ids=None, position_ids=None, attention_mask=mask, decoder_input=combined,
                           labels=labels_c)
    return (out.float() * loss_mask).sum(), loss_mask.sum()


@torch.no_grad()
def logits(model, input_ids: torch.Tensor, images: torch.Tensor, num_image_tiles: torch.Tensor,
           positions: torch.Tensor | None = None) -> torch.Tensor:
    """Full-vocab logits [1, S, V] for one unpacked sequence (TP-gathered); used by the HF parity check."""
    m = unwrap(model)
    set_positions(m, positions)
    out, _ = m(images=images, input_ids=input_ids, position_ids=None, attention_mask=None, labels=None,
               loss_mask=None, num_image_tiles=num_image_tiles, runtime_gather_output=True,
               sound_clips=torch.zeros(0))
    set_positions(m, None)
    return out
