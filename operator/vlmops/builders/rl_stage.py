"""VLMRLStage -> select Indexed Job (N samples per prompt, rewards, per-prompt statistics) -> merge Job
(the discrepancy rule, the selection committed) -> train Job (GRPO phases, HF export, manifest)."""
from __future__ import annotations

import json
from typing import Any

from ..api import rl_stage, training_stage
from ..api.rl_stage import PolicyRef, VLMRLStageSpec
from .common import BuildContext, Plan, Step, flag_args, job, py
from .inputs import Inputs, resolve


def policy_uri(ref: PolicyRef, inputs: Inputs, waiting: list[str]) -> tuple[str | None, str | None]:
    """(the policy's HF export, its expected digest): a stage's export is checked against the digest of
    the stage's output manifest, so nothing downstream silently reads other weights. An HF repo id is
    passed as is (looked up in the local HF cache, never downloaded)."""
    for kind, name in ((training_stage.KIND, ref.training_stage), (rl_stage.KIND, ref.rl_stage)):
        if not name:
            continue
        obj = resolve(inputs, kind, name, waiting)
        if obj is None:
            return None, None
        status = obj.get("status") or {}
        if not status.get("hf"):
            waiting.append(f"{kind.kind}/{name} has no Hugging Face export in status.hf")
            return None, None
        return status["hf"], (status.get("output") or {}).get("digest")
    if ref.checkpoint:
        return ref.checkpoint, None
    return ref.hugging_face, None


def select_gpus(spec: VLMRLStageSpec) -> int:
    """GPUs of a select pod: vLLM spreads the policy over all of them (tensor parallel); transformers'
    generate samples on one (more select shards use more GPUs)."""
    return spec.gpus if spec.rollout == "vllm" else min(spec.gpus, 1)


def _gpu(spec: VLMRLStageSpec, gpus: int) -> dict[str, Any] | None:
    return {"limits": {spec.gpu_resource: str(gpus)}} if gpus else None


def select_args(spec: VLMRLStageSpec, policy: str, digest: str | None) -> list[str]:
    s = spec.selection
    return py("rl", "select", *flag_args([
        ("--policy", policy), ("--policy-digest", digest), ("--prompts", spec.prompts.uri),
        ("--samples", s.samples), ("--temperature", s.temperature), ("--max-completion-length", s.max_completion_length),
        ("--max-prompt-length", min(p.max_prompt_length for p in spec.rl.phases)), ("--template", s.template),
        ("--rewards", s.rewards), ("--correct-reward", s.correct_reward), ("--seed", s.seed),
        ("--rollout", spec.rollout), ("--gpus", select_gpus(spec)), ("--shards", spec.shards),
    ]), "--output", spec.output.uri)


def merge_args(spec: VLMRLStageSpec) -> list[str]:
    s = spec.selection
    return py("rl", "merge", *flag_args([
        ("--shards", spec.shards), ("--pass-at-n-min", s.pass_at_n_min), ("--pass-at-1-max", s.pass_at_1_max),
        ("--reward-range", s.reward_range), ("--max-prompts", s.max_prompts), ("--seed", s.seed),
    ]), "--output", spec.output.uri)


def train_args(spec: VLMRLStageSpec, policy: str, digest: str | None) -> list[str]:
    phases = json.dumps([p.wire() for p in spec.rl.phases], sort_keys=True, separators=(",", ":"))
    args = flag_args([
        ("--policy", policy), ("--policy-digest", digest), ("--phases", phases), ("--rollout", spec.rollout),
        ("--gpus", spec.gpus), ("--seed", spec.seed), ("--checkpoint-uri", spec.checkpoint.uri),
        ("--checkpoint-interval", spec.checkpoint.interval_steps), ("--checkpoint-keep", spec.checkpoint.keep),
    ]) + ["--output", spec.output.uri]
    if spec.gpus > 1:  # one process per GPU (TRL/accelerate data-parallel); torchrun sets their ranks
        return ["torchrun", "--standalone", "--nproc-per-node", str(spec.gpus), "-m", "vlmops_jobs.rl", "train", *args]
    return py("rl", "train", *args)


def build(cr: dict[str, Any], spec: VLMRLStageSpec, inputs: Inputs, ctx: BuildContext) -> Plan:
    waiting: list[str] = []
    policy, digest = policy_uri(spec.init_from, inputs, waiting)
    if policy is None:
        return Plan(waiting_for=waiting)
    # select and train: data loaders and NCCL need more /dev/shm than the runtime's 64 MB
    select = job(cr, spec, "select", select_args(spec, policy, digest), ctx, image_key="train",
                 completions=spec.shards, resources=_gpu(spec, select_gpus(spec)), shm=True)
    merge = job(cr, spec, "merge", merge_args(spec), ctx)
    train = job(cr, spec, "train", train_args(spec, policy, digest), ctx, image_key="train",
                resources=_gpu(spec, spec.gpus), shm=True)
    return Plan(steps=[Step("select", select), Step("merge", merge), Step("train", train)],
                inputs={"policy": policy, "prompts": spec.prompts.uri})
