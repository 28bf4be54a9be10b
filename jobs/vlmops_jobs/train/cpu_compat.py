"""megatron-core on a machine without CUDA: the few adjustments it needs, in one place.

Pinned to megatron-core 0.19.2 (the version in pyproject.toml). Applied only when
`torch.cuda.is_available()` is False (CI, laptops); on GPU nodes nothing here runs.
Each patch names the upstream function it replaces; if megatron-core moves, `apply()`
fails loudly instead of silently training something else.

What needs it (measured on megatron-core 0.19.2 without CUDA):
- `GlobalMemoryBuffer.get_tensor` allocates on `torch.cuda.current_device()`;
- `transformer.utils.get_default_causal_mask` (and the copy imported by
  `fusions.fused_softmax`) builds its mask on "cuda";
- distributed checkpointing (save and load) calls `torch.cuda.synchronize()` and puts small
  tensors on `torch.cuda.current_device()` (`cuda_calls_on_cpu()` below, as for the optimizer);
- the RNG tracker: `model_parallel_cuda_manual_seed(..., inference_rng_tracker=True)` (a CPU
  tracker; see `seed_rng`); activation recompute's `tensor_parallel.random._get_all_rng_states` /
  `_set_all_rng_states` read and write the CUDA RNG state;
- megatron's DDP, its optimizers (mixed-precision and distributed) and `finalize_model_grads`
  allocate with `device="cuda"` / `torch.cuda.current_device()`, check `param.type()` against
  `torch.cuda.*Tensor` names and open CUDA streams: `cuda_calls_on_cpu()` maps those to the CPU
  around construction, the optimizer step and checkpoint I/O (the same megatron code runs; only
  the device changes). Forward/backward run outside it (no per-op overhead there);
- without Transformer Engine / Apex the distributed optimizer falls back to torch AdamW, whose
  per-parameter `step` tensor megatron's loader does not expect (`optimizer_state_ready()` and the
  `_set_main_param_and_optimizer_states` patch). This applies to any machine without TE/Apex.
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
    """Idempotent. On GPU machines only the optimizer's step-key fallback applies, and only when
    Transformer Engine / Apex are missing (our specs are megatron's local ones)."""
    global _APPLIED
    if _APPLIED:
        return
    if not needed():
        if _torch_adam_fallback():
            _patch_torch_adam_step_key()
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

    # Activation recompute (`parallelism.recompute`): megatron's CheckpointFunction saves and
    # restores the CUDA RNG state around the recomputed forward; on a CPU there is none (the CPU
    # state and the tracker's states are still saved and restored).
    from megatron.core.tensor_parallel import random as tp_random

    def _get_all_rng_states():
        return torch.get_rng_state(), None, tp_random.get_cuda_rng_tracker().get_states()

    def _set_all_rng_states(cpu_rng_state, cuda_rng_state, cuda_rng_state_tracker):
        torch.set_rng_state(cpu_rng_state)
        tp_random.get_cuda_rng_tracker().set_states(cuda_rng_state_tracker)

    tp_random._get_all_rng_states = _get_all_rng_states
    tp_random._set_all_rng_states = _set_all_rng_states

    _patch_torch_adam_step_key()
    _APPLIED = True


class _CudaNamesOnCpu(torch.overrides.TorchFunctionMode):
    """Inside megatron's optimizer code: `device="cuda"` -> CPU, `.cuda()` -> no-op,
    `tensor.type()` -> the CUDA type name megatron compares against."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "device" in kwargs and _is_cuda(kwargs["device"]):
            kwargs = {**kwargs, "device": torch.device("cpu")}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.to:
            args = tuple(torch.device("cpu") if _is_cuda(a) else a for a in args)
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name if name.startswith("torch.cuda.") else name.replace("torch.", "torch.cuda.", 1)
        return func(*args, **kwargs)


def _is_cuda(dev) -> bool:
    if isinstance(dev, str):
        return dev.startswith("cuda")
    if isinstance(dev, torch.device):
        return dev.type == "cuda"
    return isinstance(dev, int) and not isinstance(dev, bool)


class _NoStream:
    """Stands in for torch.cuda.Stream / Event: CPU work is already ordered."""

    def __init__(self, *a, **k):
        pass

    def __getattr__(self, name):
        return lambda *a, **k: None

    def query(self):
        return True


@contextlib.contextmanager
def cuda_calls_on_cpu():
    """Around megatron DDP / optimizer / finalize_model_grads / dist_checkpointing calls.
    Does nothing when a GPU is present."""
    if not needed():
        yield
        return
    names = ("current_device", "synchronize", "empty_cache", "Stream", "Event", "current_stream",
             "default_stream", "stream")
    saved = {n: getattr(torch.cuda, n) for n in names}
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
    torch.cuda.empty_cache = lambda: None  # type: ignore[assignment]
    torch.cuda.Stream = torch.cuda.Event = _NoStream  # type: ignore[misc,assignment]
    torch.cuda.current_stream = torch.cuda.default_stream = lambda *a, **k: _NoStream()  # type: ignore[assignment]
    torch.cuda.stream = lambda *a, **k: contextlib.nullcontext()  # type: ignore[assignment]
    try:
        with _CudaNamesOnCpu():
            yield
    finally:
        for n, v in saved.items():
            setattr(torch.cuda, n, v)


def _torch_adam_fallback() -> bool:
    from megatron.core.optimizer import distrib_optimizer

    return not distrib_optimizer.HAVE_APEX_OR_TE


def optimizer_state_ready(optimizer) -> None:
    """Before `sharded_state_dict(is_loading=True)` on a fresh optimizer: megatron reads the common
    `step` out of the optimizer state, which torch AdamW (the fallback without TE/Apex) creates only
    on its first step. Megatron's own dummy-step initialiser does it (zero grads, no update)."""
    if not _torch_adam_fallback():
        return
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    for o in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(o, "optimizer", None)
        if inner is None or len(inner.state):
            continue
        if isinstance(o, DistributedOptimizer):
            o._init_optimizer_states_with_dummy_values()
        else:  # mixed-precision / fp32 optimizer: the same zero-grad step on its (main) params
            saved = [(p, p.grad) for g in inner.param_groups for p in g["params"]]
            for p, _ in saved:
                p.grad = torch.zeros_like(p)
            wd = [g["weight_decay"] for g in inner.param_groups]
            for g in inner.param_groups:
                g["weight_decay"] = 0.0
            inner.step()
            for g, w in zip(inner.param_groups, wd):
                g["weight_decay"] = w
            for p, grad in saved:
                p.grad = grad


def _patch_torch_adam_step_key() -> None:
    """DistributedOptimizer copies every tensor of a parameter's optimizer state from the loaded
    checkpoint; torch AdamW's per-parameter `step` is not among them (megatron restores the step
    separately, in `load_state_dict`). Skip keys the checkpoint does not carry."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    orig = DistributedOptimizer._set_main_param_and_optimizer_states
    if getattr(orig, "_vlmops", False):
        return

    @functools.wraps(orig)
    def patched(self, model_param, tensors):
        group_index, group_order = self.model_param_group_index_map[model_param]
        main = self.optimizer.param_groups[group_index]["params"][group_order]
        extra = {k: None for k in self.optimizer.state.get(main, {}) if k not in tensors}
        return orig(self, model_param, {**tensors, **extra})

    patched._vlmops = True  # type: ignore[attr-defined]
    DistributedOptimizer._set_main_param_and_optimizer_states = patched

    # Its loader also hands every parameter the *same* `step` tensor; torch AdamW increments
    # `state["step"]` in place once per parameter, so after a resume the shared counter ran ahead
    # (wrong bias correction: the loss curve left the uninterrupted one). Give each its own copy.
    orig_load = DistributedOptimizer.load_state_dict

    @functools.wraps(orig_load)
    def load_state_dict(self, state_dict):
        orig_load(self, state_dict)
        for st in self.optimizer.state.values():
            if torch.is_tensor(st.get("step")):
                st["step"] = st["step"].detach().clone()

    DistributedOptimizer.load_state_dict = load_state_dict


def seed_rng(seed: int) -> None:
    """megatron's model-parallel RNG tracker; the CPU-capable variant when there is no GPU."""
    from megatron.core import tensor_parallel

    tensor_parallel.model_parallel_cuda_manual_seed(seed, inference_rng_tracker=needed())
