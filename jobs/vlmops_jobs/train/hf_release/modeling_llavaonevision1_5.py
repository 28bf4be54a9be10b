"""LLaVA-OneVision-1.5 for transformers, written for the version vlmops pins: loads the released
checkpoints' tensors (`visual.*`, `model.*`, `lm_head.weight`) and vlmops exports alike.

    pixel_values [N, 3*P*P] -> RICE-ViT (class token per image, 2D RoPE, attention within each image)
      -> patch merger (LayerNorm, merge^2 patches concatenated, Linear-GELU-Linear)
      -> the image-token positions of a Qwen3 LLM (transformers' own Qwen3Model; 1D positions)

Shipped next to every export (`auto_map`), so lmms-eval's `llava_onevision1_5` loads it with
`trust_remote_code=True`. The trainer's megatron model (vlmops_jobs.train.model) computes the same
function; tests/jobs/train/test_release_format.py holds them to 1e-4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel, Qwen3Model
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_llavaonevision1_5 import Llavaonevision1_5Config, RiceConfig


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class RicePatchEmbed(nn.Module):
    def __init__(self, config: RiceConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.proj = nn.Conv2d(config.in_channels, config.hidden_size, config.patch_size, config.patch_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, self.proj.in_channels, self.patch_size, self.patch_size).to(self.proj.weight.dtype)
        return self.proj(x).flatten(1)


class RiceAttention(nn.Module):
    def __init__(self, config: RiceConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        S = x.shape[0]
        q, k, v = self.qkv(x).view(S, 3, self.num_heads, -1).permute(1, 2, 0, 3).unbind(0)  # [heads, S, d]
        q = (q.float() * cos + _rotate_half(q.float()) * sin).to(v.dtype)
        k = (k.float() * cos + _rotate_half(k.float()) * sin).to(v.dtype)
        out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask)[0]  # [heads, S, d]
        return self.proj(out.transpose(0, 1).reshape(S, -1))


class RiceBlock(nn.Module):
    def __init__(self, config: RiceConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=1e-5)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=1e-5)
        self.attn = RiceAttention(config)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.mlp.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.norm1(x), cos, sin, mask)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class RicePatchMerger(nn.Module):
    def __init__(self, config: RiceConfig):
        super().__init__()
        self.hidden_size = config.hidden_size * config.spatial_merge_size ** 2
        self.ln_q = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(self.hidden_size, self.hidden_size), nn.GELU(),
                                 nn.Linear(self.hidden_size, config.text_hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_q(x).view(-1, self.hidden_size))


class RiceTransformer(nn.Module):
    """The vision tower: patches in merge-window order, grid_thw [images, 3] in patches."""

    def __init__(self, config: RiceConfig):
        super().__init__()
        self.config = config
        head_dim = config.hidden_size // config.num_heads
        self.patch_embed = RicePatchEmbed(config)
        self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.class_pos_emb = nn.Parameter(torch.zeros(1, head_dim // 2))
        self.pre_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.blocks = nn.ModuleList(RiceBlock(config) for _ in range(config.depth))
        self.merger = RicePatchMerger(config)
        self.rope_quarter = head_dim // 2

    def _inv_freq(self, device: torch.device) -> torch.Tensor:
        # computed, not a non-persistent buffer: from_pretrained builds on the meta device and leaves
        # such buffers as uninitialised memory unless _init_weights knows them
        q = self.rope_quarter
        return 1.0 / (10000.0 ** (torch.arange(0, q, 2, device=device, dtype=torch.float32) / q))

    def _angles(self, grid_thw: torch.Tensor) -> torch.Tensor:
        m = self.config.spatial_merge_size
        out = []
        for t, h, w in grid_thw.tolist():
            rows = torch.arange(h)[:, None].expand(h, w).reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten()
            cols = torch.arange(w)[None, :].expand(h, w).reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten()
            out.append(torch.stack([rows, cols], -1).repeat(t, 1))
        device = self.class_embedding.device
        pos = torch.cat(out).to(device)
        return (pos[..., None].float() * self._inv_freq(device)).flatten(1)

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixel_values)
        angles = self._angles(grid_thw)
        sizes = (grid_thw[:, 0] * grid_thw[:, 1] * grid_thw[:, 2]).tolist()
        xs, rs, seg = [], [], []
        for k, (xi, ri) in enumerate(zip(x.split(sizes), angles.split(sizes))):
            xs += [self.class_embedding.to(x.dtype)[None], xi]
            rs += [self.class_pos_emb.float(), ri]
            seg.append(torch.full((xi.shape[0] + 1,), k, device=x.device))
        x = self.pre_layernorm(torch.cat(xs))
        emb = torch.cat(rs)
        emb = torch.cat((emb, emb), -1)
        cos, sin = emb.cos()[None], emb.sin()[None]  # [1, S, d]: broadcast over heads
        seg = torch.cat(seg)
        mask = (seg[:, None] == seg[None, :])[None]  # attend within the same image only
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        starts = torch.tensor([0] + sizes[:-1], device=x.device).cumsum(0) + torch.arange(len(sizes), device=x.device)
        keep[starts] = False
        return self.merger(x[keep])


class LLaVAOneVision1_5_PreTrainedModel(PreTrainedModel):
    config_class = Llavaonevision1_5Config
    base_model_prefix = ""
    supports_gradient_checkpointing = False
    _no_split_modules = ["RiceBlock", "Qwen3DecoderLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RiceTransformer):
            nn.init.normal_(module.class_embedding, std=std)
            nn.init.normal_(module.class_pos_emb, std=std)
        else:
            super()._init_weights(module)


class LLaVAOneVision1_5_ForConditionalGeneration(LLaVAOneVision1_5_PreTrainedModel, GenerationMixin):
    """`visual` (RICE-ViT + merger), `model` (Qwen3Model), `lm_head`: the released checkpoints' layout."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: Llavaonevision1_5Config):
        super().__init__(config)
        self.visual = RiceTransformer(config.vision_config)
        self.model = Qwen3Model(config.text_config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def embed_inputs(self, input_ids, pixel_values=None, image_grid_thw=None):
        """Token embeddings with each image's merged patch features in its image-token slots."""
        inputs_embeds = self.model.embed_tokens(input_ids)
        if pixel_values is None:
            return inputs_embeds
        feats = self.visual(pixel_values.to(self.visual.patch_embed.proj.weight.dtype), image_grid_thw)
        slots = input_ids == self.config.image_token_id
        if int(slots.sum()) != feats.shape[0]:
            raise ValueError(f"{int(slots.sum())} image tokens in the text, {feats.shape[0]} image features")
        return inputs_embeds.masked_scatter(slots[..., None].expand_as(inputs_embeds), feats.to(inputs_embeds.dtype))

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, pixel_values=None, image_grid_thw=None,
                cache_position=None, logits_to_keep=0, mm_token_type_ids=None, pixel_values_videos=None,
                video_grid_thw=None, **kwargs):
        # mm_token_type_ids (the Qwen2.5-VL processor's) only say which tokens are image tokens: the ids do
        if pixel_values_videos is not None:
            raise ValueError("videos are not supported by this export (the trainer feeds images only)")
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, pixel_values, image_grid_thw)
        cache = kwargs.pop("cache", None) or past_key_values
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache, use_cache=use_cache, cache_position=cache_position, **kwargs)
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.cache,
                                      hidden_states=out.hidden_states, attentions=out.attentions)

    def prepare_inputs_for_generation(self, *args, pixel_values=None, image_grid_thw=None, **kwargs):
        inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        cache_position = inputs.get("cache_position")
        if cache_position is None or int(cache_position[0]) == 0:  # images only on the prefill step
            inputs["pixel_values"], inputs["image_grid_thw"] = pixel_values, image_grid_thw
        return inputs


__all__ = ["LLaVAOneVision1_5_ForConditionalGeneration", "LLaVAOneVision1_5_PreTrainedModel"]
