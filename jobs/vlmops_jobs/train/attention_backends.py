"""Which packed-attention backend runs: the names, what each machine can run, `auto`.

Cheap to import (no torch at import time): the trainer's flag parsing and start checks use it.
The kernels themselves are in `attention.py`.
"""
from __future__ import annotations

from ..common.result import JobError

BACKENDS = ("local", "te", "varlen", "flex", "sdpa")
CHOICES = ("auto",) + BACKENDS
THD_BACKENDS = {"te"}  # backends fed THD tensors (see qkv_format)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def available(device: str, half: bool = True) -> list[str]:
    """Backends that can train on `device` ("cpu" or "cuda"), best first. `half`: bf16 training (the
    fused kernels of te and varlen take bf16/fp16 only)."""
    if device != "cuda":
        return ["local", "sdpa"]
    out = []
    if half and _importable("transformer_engine"):
        out.append("te")
    if half and _importable("torch.nn.attention.varlen"):
        out.append("varlen")
    out.append("sdpa")
    if _importable("torch.nn.attention.flex_attention"):
        out.append("flex")  # after sdpa for `auto`: compiled per shape, so first steps are slow
    return out + ["local"]


def forward_only(device: str) -> list[str]:
    """Backends that compute a forward pass (no backward) on `device`: FlexAttention on a CPU."""
    return ["flex"] if device == "cpu" and _importable("torch.nn.attention.flex_attention") else []


def resolve(choice: str, device: str, *, training: bool = True, half: bool = True) -> str:
    """The backend `choice` means on `device` (with bf16 if `half`); a clear JobError (exit 2) when it
    cannot run there."""
    if choice not in CHOICES:
        raise JobError(f"attention {choice!r}: must be one of {', '.join(CHOICES)}")
    usable = available(device, half) + ([] if training else forward_only(device))
    if choice == "auto":
        return "local" if device == "cpu" else usable[0]
    if choice not in usable:
        why = {"te": "needs Transformer Engine, a GPU and bf16", "varlen": "needs a GPU and bf16 (flash kernels)",
               "flex": "needs a GPU to train (FlexAttention has no backward on a CPU)"}.get(choice, "")
        where = f"{device}{'' if half or device != 'cuda' else ' in fp32'}"
        raise JobError(f"attention {choice!r} cannot run on {where}: {why}; usable here: {', '.join(usable)}")
    return choice


def qkv_format(backend: str) -> str:
    """THD (tokens, heads, dim) where Transformer Engine needs it; SBHD elsewhere, which keeps RoPE
    one vectorised op (megatron's THD RoPE loops over sub-samples with a host sync each)."""
    return "thd" if backend in THD_BACKENDS else "sbhd"
