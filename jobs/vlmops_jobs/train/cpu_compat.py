"""megatron-core on a machine without CUDA: the few adjustments it needs, in one place.

Pinned to megatron-core 0.19.2 (the version in pyproject.toml). Applied only when
`torch.cuda.is_available()` is False (CI, laptops); on GPU nodes nothing here runs.
Each patch names the upstream function it replaces; if megatron-core moves, `apply()`
fails loudly instead of silently training something else.

What needs it (measured, see ../shared/design/environment.md):
- `GlobalMemoryBuffer.get_tensor` allocates on `torch.cuda.current_device()`;
- `transformer.utils.get_default_causal_mask` (and the copy imported by
  `fusions.fused_softmax`) builds its mask on "cuda";
- `CLIPViTModel` defaults `ln_pre_impl` to TENorm (Transformer Engine) and moves its
  `position_ids` with `.cuda()` in `__init__`;
- distributed checkpointing (save and load) calls `torch.cuda.synchronize()` and puts small
  tensors on `torch.cuda.current_device()`: `checkpoint_io()` maps both to the CPU while a
  checkpoint is read or written;
- the RNG tracker: `model_parallel_cuda_manual_seed(..., inference_rng_tracker=True)` (a CPU
  tracker; see `seed_rng`);
- megatron's DDP / distributed optimizer need CUDA: the trainer uses its own gloo all-reduce and
  torch AdamW instead (see trainer.py), not a patch.
"""
from __future__ import annotations

import contextlib
import functools
import operator

import torch

PINNED_MEGATRON_CORE = "0.19.2"
_APPLIED = False


def needed() -> bool:
    return not torch.cuda.is_available()


def te_available() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def apply() -> None:
    """Idempotent. On GPU machines only the vision norm default changes, and only when
    Transformer Engine is missing (our specs are megatron's local ones)."""
    global _APPLIED
    if _APPLIED:
        return
    if not needed():
        if not te_available():
            _clip_norm_defaults(move_to_cuda=True)
        _APPLIED = True
        return
    from importlib.metadata import version

    v = version("megatron-core")
    if v != PINNED_MEGATRON_CORE:
        raise RuntimeError(f"cpu_compat is written for megatron-core {PINNED_MEGATRON_CORE}, found {v}")

    from megatron.core import utils as mc_utils
    from megatron.core.fusions import fused_softmax
    from megatron.core.transformer import utils as tr_utils

    def get_tensor(self, tensor_shape, dtype, name, mem_alloc_context=None):
        required_len = functools.reduce(operator.mul, tensor_shape, 1)
        buf = self.buffer.get((name, dtype))
        if buf is None or buf.numel() < required_len:
            buf = self.buffer[(name, dtype)] = torch.empty(required_len, dtype=dtype, requires_grad=False)
        return buf[0:required_len].view(*tensor_shape)

    mc_utils.GlobalMemoryBuffer.get_tensor = get_tensor

    def get_default_causal_mask(sq: int) -> torch.Tensor:
        return torch.triu(torch.ones(sq, sq), diagonal=1).bool()

    tr_utils.get_default_causal_mask = get_default_causal_mask
    fused_softmax.get_default_causal_mask = get_default_causal_mask

    _clip_norm_defaults(move_to_cuda=False)
    _APPLIED = True


def _clip_norm_defaults(move_to_cuda: bool) -> None:
    """`CLIPViTModel` defaults its pre/post norms to TENorm; without Transformer Engine that
    resolves to a LayerNorm that rejects `config=`. Use megatron's WrappedTorchNorm instead."""
    from megatron.core.models.vision import clip_vit_model
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    orig_init = clip_vit_model.CLIPViTModel.__init__

    @functools.wraps(orig_init)
    def clip_init(self, *args, **kwargs):
        kwargs.setdefault("ln_pre_impl", WrappedTorchNorm)
        kwargs.setdefault("ln_post_impl", WrappedTorchNorm)
        with contextlib.nullcontext() if move_to_cuda else no_cuda_moves():
            orig_init(self, *args, **kwargs)

    clip_vit_model.CLIPViTModel.__init__ = clip_init


@contextlib.contextmanager
def no_cuda_moves():
    """`Tensor.cuda()` returns the tensor unchanged inside this block (CPU-only builds)."""
    orig = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = orig  # type: ignore[method-assign]


def seed_rng(seed: int) -> None:
    """megatron's model-parallel RNG tracker; the CPU-capable variant when there is no GPU."""
    from megatron.core import tensor_parallel

    tensor_parallel.model_parallel_cuda_manual_seed(seed, inference_rng_tracker=needed())


@contextlib.contextmanager
def checkpoint_io():
    """Around dist_checkpointing.save/load on CPU: `torch.cuda.current_device()` -> "cpu",
    `torch.cuda.synchronize()` -> no-op. Does nothing when a GPU is present."""
    if not needed():
        yield
        return
    cd, sync = torch.cuda.current_device, torch.cuda.synchronize
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.current_device, torch.cuda.synchronize = cd, sync
