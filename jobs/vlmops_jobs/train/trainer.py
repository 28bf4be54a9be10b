"""VLMTrainingStage workload: megatron-core LLaVA training on packed shards, one process per rank
under torchrun (see docs/jobs-train.md)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from vlmops_contract.layouts import MANIFEST
from vlmops_contract.layouts.train import HF_EXPORT, PROGRESS
from vlmops_contract.model_shapes import PRESETS, Preset, preset_from_model_json

from ..common.result import JobError
from . import attention_backends

# Importing this module stays cheap (the CLI imports it for --help and usage errors): torch,
# megatron and the data reader are imported by `run`.

MODULES = ("vision", "projector", "language")


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    a("--attention", default="auto", choices=list(attention_backends.CHOICES),
      help="packed-sequence attention backend (auto: te > varlen > sdpa on a GPU, local on a CPU)")
    a("--recompute", nargs="?", const="full", default="none", choices=["none", "selective", "full"],
      help="activation recomputation (bare flag: full)")
    a("--checkpoint-uri", default=None)
    a("--checkpoint-interval", type=int, default=0, help="steps between checkpoints (0: only the final one)")
    a("--checkpoint-keep", type=int, default=2)
    a("--init-from", default=None, help="weights only: a checkpoint prefix (with `latest`) or iteration dir, or hf://<dir | prefix | "
      "repo id> (a snapshot in the LLaVA-OneVision-1.5 release format, converted while loading)")
    a("--init-from-identity", default=None, help="the identity digest of what --init-from holds (the operator "
      "passes the upstream stage's); without it a checkpoint's files are digested")
    a("--output", default=None, help=f"{PROGRESS}, {HF_EXPORT}/, {MANIFEST} (last)")
    a("--metrics-port", type=int, default=9400, help="Prometheus port on rank 0 (0: off)")
    a("--peak-tflops", type=float, default=989.0, help="per-device peak for MFU (H100 bf16 dense: 989)")
    a("--progress-interval", type=int, default=10)
    a("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="auto: bf16 on GPU, fp32 on CPU")
    a("--hf-export", default="auto", choices=["auto", "on", "off"],
      help="export the final weights in the release's HF format under --output (auto/on: yes)")


@dataclass(frozen=True)
class StartChecks:
    """What `validate` derives from the flags alone."""
    preset: Preset
    dp: int                       # data-parallel size: world / (tensor * pipeline * context)
    trainable: tuple[str, ...]    # sorted module names
    attention: str = "local"      # the resolved backend (attention.BACKENDS)


def _trainable(s: str) -> tuple[str, ...]:
    mods = tuple(sorted({m.strip() for m in s.split(",") if m.strip()}))
    bad = [m for m in mods if m not in MODULES]
    if bad or not mods:
        raise JobError(f"trainable {s!r}: each entry must be one of {', '.join(MODULES)}")
    return mods


def validate(args, world: int) -> StartChecks:
    """Everything checkable before a process group exists: the spec rules the API enforces too
    (`vlmops_contract.stage_checks`), then what only the job's own flags can break."""
    from vlmops_contract.stage_checks import StageFacts, problems

    preset = preset_from_model_json(args.model_json) if args.model_json else PRESETS[args.preset]
    if min(args.tensor, args.pipeline, args.context) < 1:
        raise JobError("spec.parallelism: tensor/pipeline/context must be >= 1")
    facts = StageFacts(world=world, tensor=args.tensor, pipeline=args.pipeline, context=args.context,
                       sequence_parallel=args.sequence_parallel, global_batch=args.global_batch,
                       micro=args.micro_batch,
                       lr=args.lr, min_lr=args.min_lr, warmup_fraction=args.warmup_fraction, preset=preset)
    bad = problems(facts)
    if bad:
        raise JobError(bad[0])
    if args.train_iters < 1:
        raise JobError("spec.trainIters: must be >= 1")
    import torch

    gpu = torch.cuda.is_available()
    half = args.precision == "bf16" or (args.precision == "auto" and gpu)  # as the training phase decides
    return StartChecks(preset=preset, dp=world // facts.model_parallel, trainable=_trainable(args.trainable),
                       attention=attention_backends.resolve(args.attention, "cuda" if gpu else "cpu", half=half))


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """The training stage, phase by phase. Returns the result on rank 0, None on the other ranks
    (only rank 0 prints the result line)."""
    from .distributed import setup_distributed, teardown
    from .outputs import save_and_export
    from .start import choose_start, load_data
    from .training import build_model_and_optimizer, restore, train_loop

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    checks = validate(args, world)
    plan = load_data(args, world, rank, checks.preset, checks.dp, checks.trainable)
    plan.attention = checks.attention
    plan.start = choose_start(plan)  # decided (and refused, exit 2) before any process group starts
    groups = setup_distributed(args)
    state = build_model_and_optimizer(plan, groups)
    restore(plan, state)
    outcome = train_loop(plan, groups, state)
    result = save_and_export(plan, state.model, outcome)
    teardown()
    return result
