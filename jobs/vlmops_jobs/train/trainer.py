"""The training loop (rank-aware; launched by torchrun). See docs/jobs-train.md."""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from typing import Any

import torch
import torch.distributed as dist

from ..common import lineage, storage
from ..common.result import JobError, emit_result
from . import checkpoint as ckpt
from . import cpu_compat
from vlmops_contract.model_shapes import PRESETS, padded_vocab, preset_from_model_json

from .flops import train_flops

MODULES = ("vision", "projector", "language")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vlmops_jobs.train", description="VLMTrainingStage workload")
    a = p.add_argument
    a("--preset", default="tiny", choices=sorted(PRESETS))
    a("--model-json", default=None, help="explicit model shapes (spec.model vision/language/projector), "
      "instead of --preset")
    a("--data", required=True, help="PackedDataset output prefix (shards/shard-*.tar)")
    a("--tokenizer", required=True, help="tokenizer dir (tokenizer.json), local or fsspec URI")
    a("--trainable", default="projector,vision,language", help="comma list of vision,projector,language")
    a("--lr", type=float, default=1e-4)
    a("--min-lr", type=float, default=0.0)
    a("--weight-decay", type=float, default=0.0)
    a("--adam-beta2", type=float, default=0.999)
    a("--warmup-fraction", type=float, default=0.0)
    a("--schedule", default="cosine", choices=["cosine", "linear", "constant"])
    a("--clip-grad", type=float, default=1.0, help="0 disables")
    a("--global-batch", type=int, default=8, help="packed sequences per optimizer step (all DP ranks)")
    a("--micro-batch", type=int, default=1, help="must be 1: one packed sequence per micro-batch")
    a("--train-iters", type=int, required=True)
    a("--seed", type=int, default=1234)
    a("--tensor", type=int, default=1)
    a("--pipeline", type=int, default=1)
    a("--context", type=int, default=1)
    a("--sequence-parallel", action="store_true")
    a("--distributed-optimizer", action="store_true")
    a("--recompute", nargs="?", const="full", default="none", choices=["none", "selective", "full"],
      help="activation recomputation (bare flag: full)")
    a("--checkpoint-uri", default=None)
    a("--checkpoint-interval", type=int, default=0, help="steps between checkpoints (0: only the final one)")
    a("--checkpoint-keep", type=int, default=2)
    a("--init-from", default=None, help="checkpoint prefix (with `latest`) or iteration dir: weights only")
    a("--output", default=None, help="progress.json, hf/, manifest.json (last)")
    a("--metrics-port", type=int, default=9400, help="Prometheus port on rank 0 (0: off)")
    a("--peak-tflops", type=float, default=989.0, help="per-device peak for MFU (H100 bf16 dense: 989)")
    a("--progress-interval", type=int, default=10)
    a("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="auto: bf16 on GPU, fp32 on CPU")
    a("--hf-export", default="auto", choices=["auto", "on", "off"], help="auto: when the preset has an HF form")
    return p.parse_args(argv)


def _trainable(s: str) -> tuple[str, ...]:
    mods = tuple(sorted({m.strip() for m in s.split(",") if m.strip()}))
    bad = [m for m in mods if m not in MODULES]
    if bad or not mods:
        raise JobError(f"trainable {s!r}: each entry must be one of {', '.join(MODULES)}")
    return mods


def validate(args, world: int) -> dict[str, Any]:
    """Everything checkable before a process group exists: the spec rules the API enforces too
    (checks.py), then what only the job's own flags can break."""
    from vlmops_contract.stage_checks import StageFacts, problems

    preset = preset_from_model_json(args.model_json) if args.model_json else PRESETS[args.preset]
    if min(args.tensor, args.pipeline, args.context) < 1:
        raise JobError("spec.parallelism: tensor/pipeline/context must be >= 1")
    facts = StageFacts(world=world, tensor=args.tensor, pipeline=args.pipeline, context=args.context,
                       sequence_parallel=args.sequence_parallel, global_batch=args.global_batch,
                       micro=args.micro_batch, init_from_hf=bool(args.init_from and args.init_from.startswith("hf://")),
                       lr=args.lr, min_lr=args.min_lr, warmup_fraction=args.warmup_fraction, preset=preset)
    bad = problems(facts)
    if bad:
        raise JobError(bad[0])
    if args.train_iters < 1:
        raise JobError("spec.trainIters: must be >= 1")
    return {"preset": preset, "dp": world // facts.model_parallel, "trainable": _trainable(args.trainable)}


def lr_at(step: int, args) -> float:
    """LR used for the update that completes step `step + 1`."""
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


def _model_json(preset, vocab: int, image_id: int) -> dict[str, Any]:
    return {"preset": preset.name, "vocab": vocab, "imageTokenId": image_id, "shapes": preset.to_json()}


def _check_model_json(what: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    for k in ("shapes", "vocab"):
        if got.get(k) != want.get(k):
            raise JobError(f"{what}: checkpoint is for preset {got.get('preset')} (vocab {got.get('vocab')}), "
                           f"incompatible with preset {want['preset']} (vocab {want['vocab']}): {k} differ")


def _resume_keys(args, trainable: tuple[str, ...], data_id: dict[str, Any]) -> dict[str, Any]:
    """What decides which data each step reads and which parameters train: a resume must keep all of
    it (tensor and data parallelism may change; the optimizer state is resharded)."""
    return {"trainable": list(trainable), "seed": args.seed, "globalBatch": args.global_batch,
            "sequenceLength": data_id["sequenceLength"], "data": data_id["digest"],
            "pipeline": args.pipeline, "context": args.context}


def _check_resume(it_uri: str, saved: dict[str, Any], want: dict[str, Any]) -> None:
    names = {"trainable": "trainable", "seed": "seed", "globalBatch": "batch.global",
             "sequenceLength": "the packed dataset's sequenceLength", "data": "the packed dataset (digest)",
             "pipeline": "parallelism.pipeline", "context": "parallelism.context"}
    diff = [f"{names[k]} {saved.get(k)!r} -> {v!r}" for k, v in want.items() if saved.get(k) != v]
    if diff:
        raise JobError(f"checkpoint {it_uri}: resuming would change {'; '.join(diff)} (the run would skip or "
                       "repeat data); keep them, or start a new stage with initFrom and a new checkpoint.uri")


def _log(rank: int, obj: dict[str, Any]) -> None:
    if rank == 0:
        print(json.dumps(obj, sort_keys=True), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    v = validate(args, world)
    preset, dp, trainable = v["preset"], v["dp"], v["trainable"]

    from .data import ChatTokenizer, PackedShards, StepLoader

    tok = ChatTokenizer(args.tokenizer)
    shards = PackedShards(args.data)
    if dp > len(shards):
        raise JobError(f"data {args.data}: {len(shards)} packed sequences for {dp} data-parallel ranks")
    vocab = padded_vocab(preset.language.vocab_size or tok.vocab_size)
    if tok.vocab_size > vocab:
        raise JobError(f"tokenizer {args.tokenizer}: {tok.vocab_size} tokens > preset vocab {vocab}")
    mjson = _model_json(preset, vocab, tok.image)
    data_id = shards.identity()
    par_json = {"tensor": args.tensor, "pipeline": args.pipeline, "context": args.context}

    # resume (own checkpoints) > init-from (weights only) > random init; decided before any group starts
    resume_it, resume_state, init_it = None, None, None
    if args.checkpoint_uri:
        lt = ckpt.read_latest(args.checkpoint_uri)
        if lt:
            resume_it = storage.join(args.checkpoint_uri, lt["iteration"])
            resume_state = storage.read_json(storage.join(resume_it, "train_state.json"))
            _check_model_json(f"checkpoint {resume_it}", ckpt.read_model_json(resume_it), mjson)
            _check_resume(resume_it, resume_state, _resume_keys(args, trainable, data_id))
    if resume_it is None and args.init_from:
        init_it, _ = ckpt.resolve(args.init_from)
        _check_model_json(f"init-from {args.init_from}", ckpt.read_model_json(init_it), mjson)

    # ------------------------------------------------------------------ process groups
    gpu = not cpu_compat.needed()
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device("cuda") if gpu else torch.device("cpu")
    if "MASTER_ADDR" not in os.environ:  # plain `python -m vlmops_jobs.train`: a one-process group
        import socket

        with socket.socket() as s_:
            s_.bind(("127.0.0.1", 0))
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s_.getsockname()[1]), RANK="0",
                              WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("nccl" if gpu else "gloo", timeout=datetime.timedelta(minutes=30))
    from megatron.core import parallel_state as ps

    ps.initialize_model_parallel(tensor_model_parallel_size=args.tensor, pipeline_model_parallel_size=args.pipeline,
                                 context_parallel_size=args.context)
    dp_rank, dp_group = ps.get_data_parallel_rank(), ps.get_data_parallel_group()
    tp_group = ps.get_tensor_model_parallel_group()
    torch.manual_seed(args.seed)
    cpu_compat.apply()
    cpu_compat.seed_rng(args.seed)

    from . import optim
    from .model import Parallel, build_model, forward_step

    bf16 = args.precision == "bf16" or (args.precision == "auto" and gpu)
    par = Parallel(args.tensor, args.pipeline, args.context, args.sequence_parallel, args.recompute, bf16)
    model = build_model(preset, vocab, tok.image, par).to(device)
    model.freeze(freeze_language_model="language" not in trainable, freeze_vision_model="vision" not in trainable,
                 freeze_vision_projection="projector" not in trainable)
    if init_it and not resume_it:  # weights before the optimizer exists: its fp32 masters copy them
        local = ckpt.Checkpointer.download(init_it)
        ckpt.Checkpointer.load_weights(model, local, f"init-from {args.init_from}")
        ckpt.Checkpointer.cleanup(local)
        _log(rank, {"event": "initialized", "from": init_it})
    ddp, opt = optim.wrap(model, optim.OptimizerSettings(
        lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay, adam_beta2=args.adam_beta2,
        clip_grad=args.clip_grad, bf16=bf16, distributed=args.distributed_optimizer))
    layout = {"world": world, "tensor": args.tensor, "pipeline": args.pipeline, "context": args.context}

    start = 0
    if resume_it:
        local = ckpt.Checkpointer.download(resume_it)
        ckpt.Checkpointer.load_training_state(ddp, opt, local, f"checkpoint {resume_it}")
        rng_restored = ckpt.Checkpointer.load_rng(local, layout)
        ckpt.Checkpointer.cleanup(local)
        start = int(resume_state["step"])
        if not rng_restored:  # another layout: a fresh, still deterministic stream per (seed, step)
            torch.manual_seed(args.seed + start)
            cpu_compat.seed_rng(args.seed + start)
        _log(rank, {"event": "resumed", "from": resume_it, "step": start, "rngRestored": rng_restored,
                    "parallel": par_json, "checkpointParallel": resume_state.get("parallel")})

    saver = ckpt.Checkpointer(args.checkpoint_uri, args.checkpoint_keep) if args.checkpoint_uri else None
    progress = None
    if rank == 0:
        from .progress import Progress

        progress = Progress(args.output, args.train_iters, args.metrics_port, args.progress_interval)
        if resume_it:
            progress.checkpoint = {"latest": resume_it, "step": start}

    loader = StepLoader(shards, tok, seed=args.seed, global_batch=args.global_batch, dp_size=dp, dp_rank=dp_rank,
                        tile=preset.vision.tile, max_len=preset.language.max_sequence_length)
    crash_after = int(os.environ.get("VLMOPS_TRAIN_CRASH_AFTER_STEP", "0") or 0)  # test hook: simulate preemption
    last_loss = float("nan")
    dropped_total = 0  # sub-samples longer than the model's max sequence length (this run's steps)
    latest_ckpt = {"latest": resume_it, "step": start} if resume_it else None
    ddp.train()

    for step, mbs in loader.iterate(start, args.train_iters):
        t0 = time.perf_counter()
        lr = lr_at(step, args)
        stats = torch.tensor([sum(m["target_tokens"] for m in mbs), sum(m["tokens"] for m in mbs),
                              sum(m["samples"] for m in mbs), sum(m["images"].shape[0] for m in mbs),
                              sum(m["dropped_samples"] for m in mbs)],
                             dtype=torch.float64, device=device)
        dist.all_reduce(stats, group=dp_group)
        dropped_total += int(stats[4])
        n_global = max(float(stats[0]), 1.0)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        optim.zero_grads(ddp, opt)
        for mb in mbs:
            ls, _ = forward_step(ddp, mb, device)
            (ls / n_global).backward()
            loss_sum += ls.detach().double()
        upd = optim.step(ddp, opt, lr)
        gnorm = upd["gradNorm"]
        dist.all_reduce(loss_sum, group=dp_group)
        last_loss = float(loss_sum) / n_global
        done = step + 1
        dt = time.perf_counter() - t0
        seq_lens = [int(m["tokens"]) for m in mbs]
        flops = train_flops(preset, vocab, sum(seq_lens), sum(int(m["images"].shape[0]) for m in mbs), seq_lens)
        fl = torch.tensor([flops], dtype=torch.float64, device=device)
        dist.all_reduce(fl, group=dp_group)
        _log(rank, {"step": done, "loss": round(last_loss, 6), "lr": lr,
                    "gradNorm": None if gnorm is None else round(gnorm, 6), "skipped": upd["skipped"],
                    "tokens": int(stats[1]), "samples": int(stats[2]), "droppedSamples": int(stats[4]),
                    "seconds": round(dt, 4)})
        if saver and ((args.checkpoint_interval and done % args.checkpoint_interval == 0) or done == args.train_iters):
            state = {"step": done, "loss": last_loss, "parallel": par_json, "preset": preset.name,
                     **_resume_keys(args, trainable, data_id)}
            diverged = optim.replica_divergence(model, tp_group)
            _log(rank, {"event": "replicaCheck", "step": done, "maxDiff": diverged})
            if diverged:
                print(f"warning: TP-replicated parameters differ across tensor-parallel ranks by {diverged:g}",
                      file=sys.stderr, flush=True)
            uri = saver.save(done, ddp, opt, state, mjson, layout)
            latest_ckpt = {"latest": uri, "step": done}
            if progress:
                progress.checkpoint = latest_ckpt
        if progress:
            progress.update(done, last_loss, int(stats[1]), int(stats[2]), float(fl),
                            time.perf_counter() - t0, world, args.peak_tflops)
        if crash_after and done == crash_after:
            dist.barrier()
            ps.destroy_model_parallel()
            dist.destroy_process_group()
            sys.stdout.flush()
            raise SystemExit(17)

    # ------------------------------------------------------------------ final export + result
    hf_uri, hf_files = None, {}
    want_hf = args.hf_export == "on" or (args.hf_export == "auto" and preset.hf_exportable)
    if args.output and want_hf:
        from .hf_export import export

        hf_uri = storage.join(args.output, "hf")
        files = export(model, preset, vocab, tok.image, tok.dir, hf_uri)
        hf_files = {f"hf/{k}": v for k, v in (files or {}).items()}
    out_block = None
    if rank == 0:
        if progress:
            progress.write()
        if args.output:
            files = dict(hf_files)
            pj = storage.join(args.output, "progress.json")
            if storage.exists(pj):
                pass  # progress.json changes while running: not part of the committed digest set
            params_json = {k.replace("_", "-"): v for k, v in sorted(vars(args).items())}
            inputs = {"data": shards.digest_inputs(), "tokenizer": {"uri": args.tokenizer}}
            if init_it:
                inputs["initFrom"] = {"uri": init_it}
            man = lineage.build_manifest(kind="VLMTrainingStage", step="train", inputs=inputs,
                                         parameters=params_json, files=files,
                                         stats={"finalLoss": round(last_loss, 6), "steps": args.train_iters,
                                                "checkpoint": latest_ckpt})
            out_block = lineage.commit_manifest(args.output, man)
        st = progress.state if progress else {}
        emit_result({
            "progress": {"step": st.get("step", args.train_iters), "totalSteps": args.train_iters,
                         "tokensPerSecond": st.get("tokensPerSecond"), "samplesPerSecond": st.get("samplesPerSecond"),
                         "mfu": st.get("mfu"), "loss": round(last_loss, 6), "droppedSamples": dropped_total},
            "checkpoint": latest_ckpt,
            "output": out_block,
            "hf": hf_uri,
        })
    dist.barrier()
    ps.destroy_model_parallel()
    dist.destroy_process_group()
