"""Model FLOPs per step, for MFU (progress, /metrics, benchmarks)."""
from __future__ import annotations

from typing import Any

from vlmops_contract.model_shapes import Preset


def train_flops(preset: Preset, vocab: int, text_tokens: int, image_patches: list[int], seq_lens: list[int]) -> float:
    """Model FLOPs of one fwd+bwd (6 x params x tokens + attention), frozen modules included (the MFU
    convention: count the model's work, not what the optimizer updates). `image_patches`: patches
    per image (each image also carries one class token through the vision tower)."""
    L = preset.language
    v = preset.vision
    n_lm = L.params_no_embedding + L.hidden_size * vocab  # output layer (the embedding lookup is free)
    flops = 6.0 * n_lm * text_tokens
    # attention scores + values: 2 matmuls x 2 FLOPs x s x (heads*d), causal halves it; x3 for fwd+bwd
    for s in seq_lens:
        flops += 3 * 2 * 2 * L.num_layers * (L.num_heads * L.head_dim) * s * s / 2
    for n in image_patches:  # vision: full attention within each image
        flops += 6.0 * v.params * (n + 1) + 3 * 2 * 2 * v.num_layers * v.hidden_size * (n + 1) ** 2
    m = v.merged_size
    flops += 6.0 * (m * m + m * L.hidden_size) * sum(image_patches) / v.merge ** 2
    return flops


def microbatch_flops(preset: Preset, vocab: int, mbs: list[dict[str, Any]]) -> float:
    """`train_flops` of the loader's packed micro-batches: attention is counted per sub-sample (what
    the model computes: nothing crosses a sub-sample boundary), not over the packed length squared."""
    from .attention import lengths_from_segments

    text = sum(int(m["tokens"]) for m in mbs)
    seq_lens = [n for m in mbs for n in lengths_from_segments(m["segment_ids"])]
    patches = [int(g.prod()) for m in mbs for g in m["image_grid_thw"]]
    return train_flops(preset, vocab, text, patches, seq_lens)
