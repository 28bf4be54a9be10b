"""Model, optimizer and the step loop: init-from weights, resume, one optimizer step per global
batch, periodic checkpoints and progress (rank 0)."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from . import checkpoint as ckpt
from . import cpu_compat, optim
from .data import StepLoader
from .distributed import Groups, teardown
from .flops import microbatch_flops
from .model import Parallel, build_model, forward_step
from .progress import Progress
from .start import Plan


@dataclass
class Training:
    model: Any           # model.LlavaOneVision15
    ddp: Any             # its DistributedDataParallel wrapper
    opt: Any             # megatron optimizer (fp32 masters)
    layout: dict[str, int]   # world/TP/PP/CP: RNG states are restored only into the same layout
    start: int = 0       # steps already done (a resume's checkpoint step)


@dataclass
class Outcome:
    """What the loop leaves for the outputs and the result."""
    loss: float = math.nan               # mean loss of the last step
    dropped: int = 0                     # sub-samples longer than the model's max sequence length (this run)
    checkpoint: dict[str, Any] | None = None   # {"latest": iteration URI, "step"}
    progress: Progress | None = None     # rank 0 only


@dataclass(frozen=True)
class StepStats:
    loss: float
    tokens: int
    samples: int
    dropped: int
    flops: float


def log(rank: int, obj: dict[str, Any]) -> None:
    if rank == 0:
        print(json.dumps(obj, sort_keys=True), flush=True)


def build_model_and_optimizer(plan: Plan, groups: Groups) -> Training:
    args = plan.args
    bf16 = args.precision == "bf16" or (args.precision == "auto" and groups.gpu)
    par = Parallel(args.tensor, args.pipeline, args.context, args.sequence_parallel, args.recompute, bf16,
                   attention=plan.attention)
    model = build_model(plan.preset, plan.vocab, plan.tok.image, par).to(groups.device)
    log(plan.rank, {"event": "attention", "backend": plan.attention, "requested": args.attention})
    model.freeze(freeze_language_model="language" not in plan.trainable,
                 freeze_vision_model="vision" not in plan.trainable,
                 freeze_vision_projection="projector" not in plan.trainable)
    if plan.start.init_from:  # weights before the optimizer exists: its fp32 masters copy them
        local = ckpt.Checkpointer.download(plan.start.init_from)
        ckpt.Checkpointer.load_weights(model, local, f"init-from {args.init_from}")
        ckpt.Checkpointer.cleanup(local)
        log(plan.rank, {"event": "initialized", "from": plan.start.init_from})
    if plan.start.init_from_hf:  # the release's format, converted while loading: each rank reads its shards
        import_release(plan, groups, model)
    ddp, opt = optim.wrap(model, optim.OptimizerSettings(
        lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay, adam_beta2=args.adam_beta2,
        clip_grad=args.clip_grad, bf16=bf16, distributed=args.distributed_optimizer))
    layout = {"world": plan.world, "tensor": args.tensor, "pipeline": args.pipeline, "context": args.context}
    return Training(model=model, ddp=ddp, opt=opt, layout=layout)


def import_release(plan: Plan, groups: Groups, model) -> None:
    from megatron.core import parallel_state as ps

    from . import release_format as rf

    reader = rf.ReleaseReader(plan.start.init_from_hf)
    step = [0]

    def progress(done: int, total: int) -> None:  # about ten progress lines per import
        if done == total or done * 10 // total > step[0]:
            step[0] = done * 10 // total
            log(plan.rank, {"event": "importing", "tensors": done, "of": total})

    t0 = time.perf_counter()
    rf.load_into(model, reader, plan.preset, ps.get_tensor_model_parallel_rank(),
                 ps.get_tensor_model_parallel_world_size(), progress)
    log(plan.rank, {"event": "imported", "from": plan.args.init_from, "digest": plan.start.init_from_hf_digest,
                    "seconds": round(time.perf_counter() - t0, 2)})


def restore(plan: Plan, state: Training) -> None:
    """Resume: weights, optimizer state (resharded to this layout), step and RNG from our own checkpoint."""
    it = plan.start.resume_from
    if not it:
        return
    local = ckpt.Checkpointer.download(it)
    ckpt.Checkpointer.load_training_state(state.ddp, state.opt, local, f"checkpoint {it}")
    rng_restored = ckpt.Checkpointer.load_rng(local, state.layout)
    ckpt.Checkpointer.cleanup(local)
    state.start = int(plan.start.resume_state["step"])
    if not rng_restored:  # another layout: a fresh, still deterministic stream per (seed, step)
        torch.manual_seed(plan.args.seed + state.start)
        cpu_compat.seed_rng(plan.args.seed + state.start)
    log(plan.rank, {"event": "resumed", "from": it, "step": state.start, "rngRestored": rng_restored,
                    "parallel": plan.parallel_json, "checkpointParallel": plan.start.resume_state.get("parallel")})


def train_loop(plan: Plan, groups: Groups, state: Training) -> Outcome:
    args = plan.args
    saver = ckpt.Checkpointer(args.checkpoint_uri, args.checkpoint_keep) if args.checkpoint_uri else None
    out = Outcome()
    if plan.start.resume_from:
        out.checkpoint = {"latest": plan.start.resume_from, "step": state.start}
    if plan.rank == 0:
        out.progress = Progress(args.output, args.train_iters, args.metrics_port, args.progress_interval)
        out.progress.checkpoint = out.checkpoint
    loader = StepLoader(plan.shards, plan.tok, seed=args.seed, global_batch=args.global_batch, dp_size=plan.dp,
                        dp_rank=groups.dp_rank, vision=plan.preset.vision,
                        max_len=plan.preset.language.max_sequence_length)
    crash_after = int(os.environ.get("VLMOPS_TRAIN_CRASH_AFTER_STEP", "0") or 0)  # test hook: simulate preemption
    state.ddp.train()
    for step, mbs in loader.iterate(state.start, args.train_iters):
        t0 = time.perf_counter()
        s = train_step(plan, groups, state, step, mbs)
        done = step + 1
        out.loss = s.loss
        out.dropped += s.dropped
        if saver and ((args.checkpoint_interval and done % args.checkpoint_interval == 0) or done == args.train_iters):
            out.checkpoint = save_checkpoint(plan, groups, state, saver, done, s.loss)
            if out.progress:
                out.progress.checkpoint = out.checkpoint
        if out.progress:
            out.progress.update(done, s.loss, s.tokens, s.samples, s.flops, time.perf_counter() - t0, plan.world,
                                args.peak_tflops)
        if crash_after and done == crash_after:
            teardown()
            sys.stdout.flush()
            raise SystemExit(17)
    return out


def train_step(plan: Plan, groups: Groups, state: Training, step: int, mbs: list[dict[str, Any]]) -> StepStats:
    """One optimizer step over this rank's micro-batches; loss and counts summed over DP; logs the step."""
    t0 = time.perf_counter()
    lr = optim.lr_at(step, plan.args)
    stats = torch.tensor([sum(m["target_tokens"] for m in mbs), sum(m["tokens"] for m in mbs),
                          sum(m["samples"] for m in mbs), sum(m["image_grid_thw"].shape[0] for m in mbs),
                          sum(m["dropped_samples"] for m in mbs)],
                         dtype=torch.float64, device=groups.device)
    dist.all_reduce(stats, group=groups.dp_group)
    n_global = max(float(stats[0]), 1.0)
    loss_sum = torch.zeros((), dtype=torch.float64, device=groups.device)
    optim.zero_grads(state.ddp, state.opt)
    for mb in mbs:
        ls, _ = forward_step(state.ddp, mb, groups.device)
        (ls / n_global).backward()
        loss_sum += ls.detach().double()
    upd = optim.step(state.ddp, state.opt, lr)
    dist.all_reduce(loss_sum, group=groups.dp_group)
    loss = float(loss_sum) / n_global
    dt = time.perf_counter() - t0
    flops = microbatch_flops(plan.preset, plan.vocab, mbs)
    fl = torch.tensor([flops], dtype=torch.float64, device=groups.device)
    dist.all_reduce(fl, group=groups.dp_group)
    gnorm = upd["gradNorm"]
    log(plan.rank, {"step": step + 1, "loss": round(loss, 6), "lr": lr,
                    "gradNorm": None if gnorm is None else round(gnorm, 6), "skipped": upd["skipped"],
                    "tokens": int(stats[1]), "samples": int(stats[2]), "droppedSamples": int(stats[4]),
                    "seconds": round(dt, 4)})
    return StepStats(loss=loss, tokens=int(stats[1]), samples=int(stats[2]), dropped=int(stats[4]), flops=float(fl))


def save_checkpoint(plan: Plan, groups: Groups, state: Training, saver: ckpt.Checkpointer, done: int,
                    loss: float) -> dict[str, Any]:
    """All ranks: check TP replicas agree (logged; a warning if not), then save; returns {"latest", "step"}."""
    train_state = {"step": done, "loss": loss, "parallel": plan.parallel_json, "preset": plan.preset.name,
                   **plan.resume_keys()}
    diverged = optim.replica_divergence(state.model, groups.tp_group)
    log(plan.rank, {"event": "replicaCheck", "step": done, "maxDiff": diverged})
    if diverged:
        print(f"warning: TP-replicated parameters differ across tensor-parallel ranks by {diverged:g}",
              file=sys.stderr, flush=True)
    uri = saver.save(done, state.ddp, state.opt, train_state, plan.model_json, state.layout)
    return {"latest": uri, "step": done}
