"""Attention over packed sequences without the S x S mask: the backends and their selection.

A packed sequence holds sub-samples (LLM) or images (vision tower) that must not see each other.
`local` is megatron's DotProductAttention with an explicit [S, S] mask (the reference; memory and
FLOPs grow with the packed length squared). The other backends get the boundaries as
`cu_seqlens` in megatron's `PackedSeqParams` and never build the mask:

    te      Transformer Engine's fused attention (megatron's TEDotProductAttention, THD format)
    varlen  torch's variable-length flash attention (torch.nn.attention.varlen; CUDA)
    flex    torch FlexAttention with a document mask (CUDA; forward-only on CPU)
    sdpa    torch scaled_dot_product_attention once per sub-sample (any device, with backward)

`auto`: te > varlen > sdpa on a GPU; on a CPU `local` (what the tests and the quickstart ran with
before the packed path existed; `sdpa` is the packed path a CPU can train with).

All non-local backends share one core-attention module (`PackedCoreAttention`) in megatron's layer
spec, so parameters, checkpoints and exports are the same whichever backend trained them.
"""
from __future__ import annotations

from typing import Any

import torch

from .attention_backends import (  # noqa: F401 (the selection, re-exported: one import for callers)
    BACKENDS, CHOICES, available, forward_only, qkv_format, resolve,
)

def lengths_from_segments(segment_ids: torch.Tensor) -> list[int]:
    """Lengths of the runs of equal ids, in order: [0,0,0,1,1,2] -> [3, 2, 1]. Segment ids are
    contiguous runs in a packed sequence (the loader emits them so)."""
    seg = segment_ids.flatten()
    if seg.numel() == 0:
        return []
    change = torch.nonzero(seg[1:] != seg[:-1]).flatten() + 1
    bounds = [0] + change.tolist() + [seg.numel()]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def packed_params(lengths: list[int], device: torch.device | str, fmt: str = "sbhd"):
    """A megatron `PackedSeqParams` (the type megatron's attention and TE expect) carrying
    `lengths` and a block-mask cache as extra attributes."""
    from megatron.core.packed_seq_params import PackedSeqParams
    from megatron.core import parallel_state as ps

    if not lengths or min(lengths) <= 0:
        raise ValueError(f"packed lengths must be positive, got {lengths}")
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    cu = cu.to(device)
    cp = ps.get_context_parallel_group(check_initialized=False)  # megatron's THD RoPE requires a group
    p = PackedSeqParams(qkv_format=fmt, cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=max(lengths),
                        max_seqlen_kv=max(lengths), cp_group=cp)
    p.lengths = list(lengths)
    p.block_masks = {}
    return p


class PackedCoreAttention(torch.nn.Module):
    """megatron core attention (DotProductAttention's constructor and forward signature) that takes
    sub-sample boundaries from `packed_seq_params` instead of a mask. Input [s, b=1, n, d] (SBHD)
    or [t, n, d] (THD); key/value may have fewer heads (GQA). Output [s, 1, n*d] or [t, n*d]."""

    backend = "sdpa"  # set on the subclass the layer spec names

    def __init__(self, config, layer_number: int, attn_mask_type, attention_type: str,
                 attention_dropout: float | None = None, softmax_scale: float | None = None,
                 cp_comm_type: str | None = None, pg_collection=None, **_: Any):
        super().__init__()
        from megatron.core.transformer.enums import AttnMaskType

        if config.context_parallel_size != 1:
            raise ValueError("packed attention: context parallelism is not supported")
        self.config = config
        self.causal = attn_mask_type in (AttnMaskType.causal, AttnMaskType.padding_causal)
        self.scale = softmax_scale if softmax_scale is not None else config.kv_channels ** -0.5

    def forward(self, query, key, value, attention_mask=None, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        from megatron.core.transformer.enums import AttnMaskType

        if packed_seq_params is None or getattr(packed_seq_params, "lengths", None) is None:
            raise RuntimeError(f"attention backend {self.backend!r} needs packed_seq_params from "
                               "attention.packed_params (the model's forward builds them)")
        causal = self.causal if attn_mask_type is None else attn_mask_type in (
            AttnMaskType.causal, AttnMaskType.padding_causal)
        sbhd = query.dim() == 4
        q, k, v = (x[:, 0] if sbhd else x for x in (query, key, value))  # [t, n, d]
        out = _KERNELS[self.backend](q, k, v, packed_seq_params, causal, self.scale)  # [t, n, d]
        out = out.reshape(out.shape[0], -1)
        return out[:, None] if sbhd else out


def _sdpa(q, k, v, p, causal: bool, scale: float):
    """One SDPA call per sub-sample: memory sum(s_i^2), never S^2; flash/memory-efficient kernels
    on a GPU, the math kernel on a CPU (with backward)."""
    outs, start = [], 0
    gqa = q.shape[1] != k.shape[1]
    for n in p.lengths:
        sl = slice(start, start + n)
        o = torch.nn.functional.scaled_dot_product_attention(
            q[sl].transpose(0, 1), k[sl].transpose(0, 1), v[sl].transpose(0, 1),
            is_causal=causal, scale=scale, enable_gqa=gqa)
        outs.append(o.transpose(0, 1))
        start += n
    return torch.cat(outs, 0)


def _varlen(q, k, v, p, causal: bool, scale: float):
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn(q, k, v, p.cu_seqlens_q, p.cu_seqlens_kv, p.max_seqlen_q, p.max_seqlen_kv, scale=scale,
                       window_size=(-1, 0) if causal else (-1, -1), enable_gqa=q.shape[1] != k.shape[1])


_FLEX = None


def _flex(q, k, v, p, causal: bool, scale: float):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    global _FLEX
    if _FLEX is None:  # compiled on a GPU (the fused kernel); eager on a CPU (forward only)
        _FLEX = torch.compile(flex_attention, dynamic=True) if q.is_cuda else flex_attention
    mask = p.block_masks.get(causal)
    if mask is None:
        doc = torch.repeat_interleave(torch.arange(len(p.lengths), device=q.device),
                                      torch.tensor(p.lengths, device=q.device))
        if causal:
            def mod(b, h, i, j):
                return (doc[i] == doc[j]) & (i >= j)
        else:
            def mod(b, h, i, j):
                return doc[i] == doc[j]
        mask = p.block_masks[causal] = create_block_mask(mod, None, None, q.shape[0], q.shape[0],
                                                         device=q.device)
    out = _FLEX(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], block_mask=mask,
                scale=scale, enable_gqa=q.shape[1] != k.shape[1])
    return out[0].transpose(0, 1)


_KERNELS = {"sdpa": _sdpa, "varlen": _varlen, "flex": _flex}


def core_attention(backend: str):
    """The module class megatron's layer spec should build for `backend` (None: keep the spec's)."""
    if backend == "local":
        return None
    if backend == "te":
        from megatron.core.extensions.transformer_engine import TEDotProductAttention

        return TEDotProductAttention
    return type(f"PackedCoreAttention_{backend}", (PackedCoreAttention,), {"backend": backend})
