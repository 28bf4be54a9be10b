"""The optimizer path, all megatron-core: DistributedDataParallel (fp32 grad buffers), its
mixed-precision or distributed optimizer (fp32 master weights), finalize_model_grads (the TP / DP
all-reduces of replicated parameters such as q/k layernorms) and grad clipping across the
model-parallel group. On a machine without CUDA the same code runs under
`cpu_compat.cuda_calls_on_cpu()`.

Loss convention: each rank back-propagates (sum of its token losses) / (global loss tokens), and
the DP reduction sums (`calculate_per_token_loss`), so the gradient is the global per-token mean
whatever the DP size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from . import cpu_compat

# Optimizer state in checkpoints is saved in megatron's "fully reshardable" layout: a resume may
# change tensor and data parallelism (megatron reshards on load).
SHARDING = {"distrib_optim_sharding_type": "fully_reshardable"}


@dataclass
class OptimizerSettings:
    lr: float
    min_lr: float
    weight_decay: float
    adam_beta2: float
    clip_grad: float
    bf16: bool
    distributed: bool


def lr_at(step: int, args) -> float:
    """LR used for the update that completes step `step + 1` (the job's schedule flags)."""
    warm = int(round(args.warmup_fraction * args.train_iters))
    if warm and step < warm:
        return args.lr * (step + 1) / warm
    if args.schedule == "constant":
        return args.lr
    frac = (step - warm) / max(1, args.train_iters - warm)
    frac = min(max(frac, 0.0), 1.0)
    if args.schedule == "linear":
        return args.min_lr + (args.lr - args.min_lr) * (1 - frac)
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))


def wrap(model, settings: OptimizerSettings):
    """(DDP-wrapped model, megatron optimizer). Call after `model.freeze(...)`: only parameters
    that require grad get buffers and optimizer state."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    config = model.language_model.config
    for c in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        c.calculate_per_token_loss = True  # DDP sums instead of averaging (see module docstring)
    ddp_cfg = DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False,
                                            use_distributed_optimizer=settings.distributed,
                                            check_for_nan_in_grad=True)
    opt_cfg = OptimizerConfig(optimizer="adam", lr=settings.lr, min_lr=settings.min_lr,
                              weight_decay=settings.weight_decay, adam_beta1=0.9, adam_beta2=settings.adam_beta2,
                              adam_eps=1e-8, clip_grad=settings.clip_grad, bf16=settings.bf16,
                              params_dtype=torch.bfloat16 if settings.bf16 else torch.float32,
                              use_distributed_optimizer=settings.distributed)
    with cpu_compat.cuda_calls_on_cpu():
        ddp = DistributedDataParallel(config, ddp_cfg, model)
        opt = get_megatron_optimizer(opt_cfg, [ddp])
    return ddp, opt


def zero_grads(ddp, opt) -> None:
    ddp.zero_grad_buffer()
    opt.zero_grad()


def step(ddp, opt, lr: float) -> dict[str, Any]:
    """After the micro-batches' backward passes: reduce grads, clip, update. Returns
    {"gradNorm": float | None, "skipped": bool}."""
    from megatron.core.distributed import finalize_model_grads

    for g in opt.param_groups:
        g["lr"] = lr
    with cpu_compat.cuda_calls_on_cpu():
        finalize_model_grads([ddp])
        ok, grad_norm, _ = opt.step()
    return {"gradNorm": None if grad_norm is None else float(grad_norm), "skipped": not ok}


def main_params(opt) -> list[torch.Tensor]:
    """The tensors the optimizer updates: fp32 master weights (or this DP rank's shard of them)."""
    return [p for g in opt.param_groups for p in g["params"]]


def sharded_state(ddp, opt, loading: bool) -> dict[str, Any]:
    """Model + optimizer sharded state dict for megatron dist_checkpointing."""
    model = ddp.module
    with cpu_compat.cuda_calls_on_cpu():
        msd = model.sharded_state_dict()
        if loading:
            cpu_compat.optimizer_state_ready(opt)
        osd = opt.sharded_state_dict(msd, is_loading=loading, metadata=SHARDING)
    return {"model": msd, "optimizer": osd}


def load_state(ddp, opt, state: dict[str, Any]) -> None:
    with cpu_compat.cuda_calls_on_cpu():
        ddp.module.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])


@torch.no_grad()
def replica_divergence(model, tp_group) -> float:
    """Largest elementwise difference across TP ranks of any parameter that TP replicates
    (norms, biases after row-parallel layers, the ViT's embeddings). 0.0 means bit-identical."""
    import torch.distributed as dist

    if dist.get_world_size(tp_group) == 1:
        return 0.0
    reps = [p.detach().double().reshape(-1) for p in model.parameters()
            if not getattr(p, "tensor_model_parallel", False)]
    if not reps:
        return 0.0
    hi = torch.cat(reps)
    lo = hi.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=tp_group)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=tp_group)
    return float((hi - lo).abs().max())
