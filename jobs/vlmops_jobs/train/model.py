"""The LLaVA-OneVision-1.5 architecture in megatron-core, plus the packed-sequence forward step.

    pixels [N, 3*P*P] --RiceViT--> [N, h_v] --PatchMerger--> [N/m^2, h_lm] --into <image> slots--> Qwen3 (GPTModel)

`RiceViT` is megatron's TransformerBlock (LayerNorm, GELU MLP, biased qkv) fed with the release's
2D rotary angles and a class token per image; images packed together attend only within
themselves. `PatchMerger` is megatron's MultimodalProjector after a LayerNorm over each patch.
The LLM is megatron's GPTModel (Qwen3: GQA, q/k RMSNorm, SwiGLU) with position ids that restart
for every sub-sample of a packed sequence. Parameter names are what `hf_release` converts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.transformer.module import MegatronModule

from . import attention as packed_attention
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
    initialize: bool = True  # False: shapes only (e.g. built on the meta device)
    attention: str = "local"  # a resolved backend of attention.BACKENDS


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
        use_cpu_initialization=cpu or not par.initialize,
        perform_initialization=par.initialize,
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
    local = {**common, "sequence_parallel": False, "context_parallel_size": 1}
    vis = TransformerConfig(
        num_layers=V.num_layers, hidden_size=V.hidden_size, num_attention_heads=V.num_heads,
        ffn_hidden_size=V.ffn_hidden_size, kv_channels=V.head_dim,
        normalization="LayerNorm", layernorm_epsilon=V.norm_eps, gated_linear_unit=False, activation_func=F.gelu,
        add_bias_linear=True, add_qkv_bias=True, **local,
    )
    proj = TransformerConfig(
        num_layers=1, hidden_size=L.hidden_size, num_attention_heads=L.num_heads, ffn_hidden_size=V.merged_size,
        gated_linear_unit=False, activation_func=F.gelu, add_bias_linear=True,
        **{**local, "recompute_granularity": None},
    )
    return lm, vis, proj


def _with_attention(spec, backend: str):
    """megatron's local layer spec with its core attention swapped for `backend`'s (parameters and
    their names do not change: core attention has none)."""
    core = packed_attention.core_attention(backend)
    if core is not None:
        spec.submodules.self_attention.submodules.core_attention = core
    return spec


def _vision_layer_spec(backend: str = "local"):
    """megatron's local ViT layer, with a padding-type mask: packed images attend only within themselves."""
    from megatron.core.models.vision.vit_layer_specs import get_vit_layer_with_local_spec
    from megatron.core.transformer.enums import AttnMaskType

    spec = get_vit_layer_with_local_spec()
    spec.submodules.self_attention.params = {"attn_mask_type": AttnMaskType.padding}
    return _with_attention(spec, backend)


class RiceViT(MegatronModule):
    """RICE-ViT: patch embedding (a bias-free linear map of each 3xPxP patch, i.e. the release's
    stride-P convolution), a class token per image with its own learned rotary angles, pre-LayerNorm,
    megatron TransformerBlock with 2D rotary positions. Returns the patch features (class tokens
    dropped) in the input's order."""

    def __init__(self, cfg, shape, spec, attention: str = "local"):
        from megatron.core.transformer.transformer_block import TransformerBlock

        super().__init__(config=cfg)
        h, P = shape.hidden_size, shape.patch
        self.shape, self.attention = shape, attention
        self.patch_embed = torch.nn.Linear(3 * P * P, h, bias=False, dtype=cfg.params_dtype)
        self.class_embedding = torch.nn.Parameter(torch.randn(h, dtype=cfg.params_dtype) * h ** -0.5)
        self.class_pos_emb = torch.nn.Parameter(torch.randn(1, shape.head_dim // 2, dtype=cfg.params_dtype))
        self.pre_layernorm = torch.nn.LayerNorm(h, eps=shape.norm_eps, dtype=cfg.params_dtype)
        self.decoder = TransformerBlock(config=cfg, spec=spec, pre_process=True, post_process=False)
        quarter = shape.head_dim // 2
        inv = 1.0 / (shape.rope_base ** (torch.arange(0, quarter, 2, dtype=torch.float32) / quarter))
        self.register_buffer("inv_freq", inv, persistent=False)

    def patch_angles(self, grid_thw: torch.Tensor) -> torch.Tensor:
        """Rotary angles [N, head_dim/2] of every patch: (row, col) angles concatenated, patches in
        merge-window order (the order the data pipeline and the HF processor emit them)."""
        m = self.shape.merge
        out = []
        for t, hh, ww in grid_thw.tolist():
            rows = torch.arange(hh).view(hh // m, m, 1, 1).expand(hh // m, m, ww // m, m)
            cols = torch.arange(ww).view(1, 1, ww // m, m).expand(hh // m, m, ww // m, m)
            pos = torch.stack([rows.permute(0, 2, 1, 3).flatten(), cols.permute(0, 2, 1, 3).flatten()], -1)
            out.append(pos.repeat(t, 1))
        pos = torch.cat(out).to(self.inv_freq.device)
        return (pos[..., None].float() * self.inv_freq).flatten(1)  # [N, 2, quarter/2] -> [N, head_dim/2]

    def forward(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        from megatron.core.tensor_parallel import copy_to_tensor_model_parallel_region

        x = self.patch_embed(pixels.to(self.patch_embed.weight.dtype))
        angles = self.patch_angles(grid_thw)  # fp32, as the release computes them (bf16 angles lose whole radians)
        sizes = (grid_thw[:, 0] * grid_thw[:, 1] * grid_thw[:, 2]).tolist()
        xs, rs, seg = [], [], []
        cls = self.class_embedding.to(x.dtype)[None]
        for k, (xi, ri) in enumerate(zip(x.split(sizes), angles.split(sizes))):
            xs += [cls, xi]
            rs += [self.class_pos_emb.float(), ri]
            seg.append(torch.full((xi.shape[0] + 1,), k, dtype=torch.long))
        x = self.pre_layernorm(torch.cat(xs))[:, None, :]  # [S, 1, h]
        # Each TP rank rotates only its own heads: the class token's learned angles get a partial
        # gradient there, summed over the TP group by megatron's copy-to-region (identity forward).
        freqs = copy_to_tensor_model_parallel_region(torch.cat(rs))
        emb = torch.cat((freqs, freqs), -1)[:, None, None, :]  # rotate-half layout, as HF's
        if self.attention == "local":
            seg = torch.cat(seg).to(x.device)
            mask = (seg[:, None] != seg[None, :])[None, None]  # True = masked: nothing across images
            y = self.decoder(hidden_states=x, attention_mask=mask, rotary_pos_emb=emb)[:, 0]
        else:  # each image (its class token + patches) is one packed segment
            packed = packed_attention.packed_params([n + 1 for n in sizes], x.device,
                                                    packed_attention.qkv_format(self.attention))
            y = self.decoder(hidden_states=x, attention_mask=None, rotary_pos_emb=emb, packed_seq_params=packed)[:, 0]
        keep = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
        starts = torch.tensor([0] + sizes[:-1], device=y.device).cumsum(0) + torch.arange(len(sizes), device=y.device)
        keep[starts] = False  # the class tokens
        return y[keep]


class PatchMerger(MegatronModule):
    """LayerNorm over each patch, merge x merge neighbouring patches concatenated, 2-layer GELU MLP."""

    def __init__(self, cfg, shape):
        from megatron.core.models.vision.multimodal_projector import MultimodalProjector
        from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
        from megatron.core.transformer.mlp import MLPSubmodules

        super().__init__(config=cfg)
        self.merged = shape.merged_size
        self.ln_q = torch.nn.LayerNorm(shape.hidden_size, eps=shape.norm_eps, dtype=cfg.params_dtype)
        self.projection = MultimodalProjector(
            cfg, MLPSubmodules(linear_fc1=ColumnParallelLinear, linear_fc2=RowParallelLinear), "mlp",
            input_size=self.merged)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.ln_q(patches).reshape(-1, self.merged)
        return self.projection(x[:, None, :])[:, 0]  # megatron layers take [S, B, h]


class LlavaOneVision15(MegatronModule):
    """vision_model (RiceViT) + vision_projection (PatchMerger) + language_model (GPTModel)."""

    def __init__(self, preset: Preset, vocab: int, image_token_id: int, par: Parallel):
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
        from megatron.core.models.gpt.gpt_model import GPTModel

        lm_cfg, vis_cfg, proj_cfg = _configs(preset, par)
        super().__init__(config=lm_cfg)
        L = preset.language
        self.preset, self.image_token_index, self.attention = preset, image_token_id, par.attention
        self.vision_model = RiceViT(vis_cfg, preset.vision, _vision_layer_spec(par.attention), par.attention)
        self.vision_projection = PatchMerger(proj_cfg, preset.vision)
        self.language_model = GPTModel(
            config=lm_cfg, transformer_layer_spec=_with_attention(
                get_gpt_layer_local_spec(qk_layernorm=True, normalization="RMSNorm"), par.attention),
            vocab_size=vocab, max_sequence_length=L.max_sequence_length, pre_process=True, post_process=True,
            parallel_output=True, share_embeddings_and_output_weights=L.tie_embeddings,
            position_embedding_type="rope", rotary_base=int(L.rope_base))

    def freeze(self, freeze_language_model: bool, freeze_vision_model: bool, freeze_vision_projection: bool):
        for frozen, module in ((freeze_language_model, self.language_model), (freeze_vision_model, self.vision_model),
                               (freeze_vision_projection, self.vision_projection)):
            if frozen:
                for p in module.parameters():
                    p.requires_grad = False

    def image_embeddings(self, pixels: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """[sum of merged tokens, h_lm]: each image's tokens in raster order of its merge windows."""
        return self.vision_projection(self.vision_model(pixels, grid_thw))


def build_model(preset: Preset, vocab: int, image_token_id: int, par: Parallel) -> LlavaOneVision15:
    """Call after parallel_state.initialize_model_parallel and cpu_compat.seed_rng."""
    cpu_compat.apply()
    model = LlavaOneVision15(preset, vocab, image_token_id, par)
    install_packed_rope(model)
    if par.bf16:
        # What megatron's Float16Module does: modules built outside the TransformerConfig's
        # params_dtype would otherwise stay fp32.
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
        else:  # every token's angles (with packed boundaries megatron asks only for the longest
            # sub-sample; its THD RoPE indexes whole-sequence angles by each sub-sample's offset)
            pos = self.positions.to(device=inv.device, dtype=inv.dtype)
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


def _decoder_input(m: LlavaOneVision15, ids: torch.Tensor, pixels: torch.Tensor, grid_thw: torch.Tensor,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Text embeddings with each image's merged tokens in place of its one `<image>` id:
    ([S', 1, h], index into `ids` of every position, -1 for image tokens)."""
    is_img = ids == m.image_token_index
    text = torch.where(is_img, torch.zeros_like(ids), ids)
    emb = m.language_model.embedding(input_ids=text[None], position_ids=None)  # [T, 1, h]
    if not bool(is_img.any()):
        return emb, torch.arange(ids.numel(), device=device)
    dtype = next(m.parameters()).dtype
    feats = m.image_embeddings(pixels.to(device=device, dtype=dtype), grid_thw.to(device))
    per_image = (grid_thw[:, 0] * grid_thw[:, 1] * grid_thw[:, 2] // (m.preset.vision.merge ** 2)).tolist()
    feats = feats.split(per_image)
    pieces, index, start = [], [], 0
    for k, p in enumerate(torch.nonzero(is_img).flatten().tolist()):
        pieces += [emb[start:p], feats[k][:, None, :].to(emb.dtype)]
        index += [torch.arange(start, p, device=device), torch.full((per_image[k],), -1, device=device)]
        start = p + 1
    pieces.append(emb[start:])
    index.append(torch.arange(start, ids.numel(), device=device))
    return torch.cat(pieces, 0), torch.cat(index)


def sub_sample_attention(m: LlavaOneVision15, segment_ids: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """The language model's attention inputs for one packed sequence: an [S, S] block-causal mask
    (local backend) or the sub-sample boundaries (every other backend)."""
    if m.attention == "local":
        return {"attention_mask": block_causal_mask(segment_ids).to(device)}
    lengths = packed_attention.lengths_from_segments(segment_ids)
    return {"attention_mask": None, "packed_seq_params": packed_attention.packed_params(
        lengths, device, packed_attention.qkv_format(m.attention))}


def forward_step(model, mb: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (sum of masked per-token losses, number of loss tokens) for one packed sequence; every
    image gives exactly its merged-token count (the packer's `imageTokens`)."""
    m = unwrap(model)
    set_positions(m, mb["position_ids"].to(device))
    attn = sub_sample_attention(m, mb["segment_ids"], device)
    ids = mb["input_ids"][0].to(device)
    combined, index = _decoder_input(m, ids, mb["pixel_values"], mb["image_grid_thw"], device)
    text = index >= 0
    labels = torch.zeros(index.numel(), dtype=torch.long, device=device)
    loss_mask = torch.zeros(index.numel(), dtype=torch.float32, device=device)
    labels[text] = mb["labels"][0].to(device)[index[text]]
    loss_mask[text] = mb["loss_mask"][0].to(device)[index[text]].float()
    out = m.language_model(input_ids=None, position_ids=None, decoder_input=combined, labels=labels[None], **attn)
    return (out.float() * loss_mask[None]).sum(), loss_mask.sum()


@torch.no_grad()
def logits(model, mb: dict[str, Any]) -> torch.Tensor:
    """Full-vocab logits [1, S', V] (TP-gathered) of a micro-batch, packed sub-samples kept apart;
    used by the HF parity checks."""
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    m = unwrap(model)
    device = next(m.parameters()).device
    set_positions(m, mb["position_ids"].to(device))
    attn = sub_sample_attention(m, mb["segment_ids"], device)
    combined, _ = _decoder_input(m, mb["input_ids"][0].to(device), mb["pixel_values"], mb["image_grid_thw"], device)
    out = m.language_model(input_ids=None, position_ids=None, decoder_input=combined, **attn)
    set_positions(m, None)
    with cpu_compat.cuda_calls_on_cpu():
        return gather_from_tensor_model_parallel_region(out)  # [1, S', V]
