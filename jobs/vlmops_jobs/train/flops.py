"""Model FLOPs per step, for MFU (progress, /metrics, benchmarks)."""
from __future__ import annotations

from vlmops_contract.model_shapes import Preset


def train_flops(preset: Preset, vocab: int, text_tokens: int, tiles: int, seq_lens: list[int]) -> float:
    """Model FLOPs of one fwd+bwd (6 x params x tokens + causal attention), frozen modules included
    (the MFU convention: count the model's work, not what the optimizer updates)."""
    L = preset.language
    v = preset.vision
    n_lm = L.params_no_embedding + L.hidden_size * vocab  # output layer (the embedding lookup is free)
    flops = 6.0 * n_lm * text_tokens
    # attention scores + values: 2 matmuls x 2 FLOPs x s x (heads*d), causal halves it; x3 for fwd+bwd
    for s in seq_lens:
        flops += 3 * 2 * 2 * L.num_layers * (L.num_heads * L.head_dim) * s * s / 2
    patches = (v.tile // v.patch) ** 2 + 1
    flops += 6.0 * v.params * tiles * patches
    flops += 3 * 2 * 2 * v.num_layers * v.hidden_size * patches * patches * tiles
    proj_in = v.hidden_size * (4 if v.pixel_shuffle else 1)
    flops += 6.0 * (proj_in * preset.projector_ffn + preset.projector_ffn * L.hidden_size) * tiles * v.tokens_per_tile
    return flops
