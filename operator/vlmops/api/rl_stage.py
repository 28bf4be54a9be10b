"""VLMRLStage (`vrl`): RL post-training of a policy's HF export — discrepancy-driven prompt selection
(an Indexed Job sampling N responses per prompt), then GRPO phases (TRL) on the selected prompts."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vlmops_contract import rl_checks

from .common import CommonSpec, CommonStatus, Model, Name, OutputSpec
from .kind import AGE, PHASE, KindAPI, column
from .rules import exactly_one, rule
from .training_stage import CheckpointSpec, CheckpointStatus, ModelRef

RewardName = Literal["exact_match", "numeric", "multiple_choice", "format"]
Template = Literal["answerOnly", "chainOfThought"]


class PolicyRef(ModelRef):
    """A policy's weights: a training stage's or an RL stage's HF export, a URI, or an HF repo."""

    RULES = (exactly_one("trainingStage", "rlStage", "checkpoint", "huggingFace"),)

    rl_stage: Name | None = Field(None, description="A VLMRLStage: its HF export (status.hf), checked against its "
                                  "output manifest's digest.")


class PromptSet(Model):
    uri: str = Field(..., min_length=1, description=(
        "Prompt table, one .jsonl or .parquet file: id, prompt (<image> marks images), image or images (paths "
        "relative to the file, or URIs), answer, answerType (exact | numeric | multiple_choice)."))


class Selection(Model):
    """Which prompts GRPO trains on: Pass@1 < Pass@N, Pass@N >= passAtNMin, Pass@1 <= passAt1Max, mean reward
    in rewardRange (docs/jobs-rl.md)."""

    samples: int = Field(8, ge=1, le=1024, description="N: responses sampled per prompt with the current policy.")
    temperature: float = Field(1.0, gt=0)
    max_completion_length: int = Field(1024, ge=1)
    template: Template = "answerOnly"
    rewards: list[RewardName] = Field(default_factory=lambda: ["exact_match", "numeric", "multiple_choice"],
                                      min_length=1, max_length=4, description="Summed per response.")
    correct_reward: float = Field(1.0, description="A response is correct when its reward reaches this.")
    pass_at_n_min: float = Field(1.0, ge=0, le=1)
    pass_at_1_max: float = Field(1.0, ge=0, le=1)
    reward_range: list[float] = Field(default_factory=lambda: [0.0, 1.0], min_length=2, max_length=2,
                                      description="[lo, hi]: the mean reward a kept prompt has (inclusive).")
    max_prompts: int | None = Field(None, ge=1, description="Keep at most this many (a seeded uniform subset).")
    seed: int = 0


class RLPhase(Model):
    name: str = Field(..., min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                      description="Names the phase's checkpoints.")
    template: Template = Field("answerOnly", description="answerOnly: the prompt as written; chainOfThought: "
                               "reasoning in <think></think>, the answer after it.")
    rewards: list[RewardName] = Field(..., min_length=1, max_length=4)
    steps: int = Field(..., ge=1)
    group_size: int = Field(8, ge=2, le=1024, description="Completions per prompt (GRPO's group).")
    prompts_per_step: int = Field(1, ge=1, le=4096)
    kl_coef: float = Field(0.04, ge=0, description="beta: weight of KL(policy || the phase's starting policy).")
    lr: float = Field(1e-6, gt=0)
    max_prompt_length: int = Field(8192, ge=1, description="Prompts with more tokens (images included) are left "
                                   "out and counted.")
    max_completion_length: int = Field(1024, ge=1)
    temperature: float = Field(1.0, gt=0)


class RLSpec(Model):
    phases: list[RLPhase] = Field(..., min_length=1, max_length=16, description="Run in order, each from the "
                                  "previous one's final weights.")


def _rl_cel_rules():
    return tuple(rule(cel, msg, lambda s: True) for cel, msg in rl_checks.cel_rules())


class VLMRLStageSpec(CommonSpec):
    # CEL text and messages from the job's own checks (vlmops_contract.rl_checks); pydantic runs them (`_rules`)
    RULES = _rl_cel_rules()

    init_from: PolicyRef = Field(..., description="The starting policy (the selection samples it too).")
    prompts: PromptSet
    selection: Selection = Field(default_factory=Selection)
    rl: RLSpec
    rollout: Literal["hf", "vllm"] = Field("hf", description="hf: transformers' generate (CPU or GPU); vllm: vLLM "
                                           "in the training process (TRL colocate) and in the select pods, GPUs only.")
    gpus: int = Field(1, ge=0, le=64, description="GPUs per pod (select shards and the GRPO job: one process each).")
    gpu_resource: str = "nvidia.com/gpu"
    shards: int = Field(1, ge=1, description="Select pods (an Indexed Job), prompts split among them.")
    seed: int = 42
    checkpoint: CheckpointSpec
    output: OutputSpec

    @model_validator(mode="after")
    def _rules(self):
        bad = rl_checks.problems(self.facts())
        if bad:
            raise ValueError("; ".join(bad))
        return self

    def facts(self) -> rl_checks.RLFacts:
        return rl_checks.RLFacts(
            gpus=self.gpus, rollout=self.rollout, reward_range=tuple(self.selection.reward_range),
            selection_rewards=tuple(self.selection.rewards),
            phases=tuple(rl_checks.Phase(p.name, p.group_size, p.prompts_per_step, tuple(p.rewards))
                         for p in self.rl.phases))


class RLProgress(Model):
    step: int | None = None
    total_steps: int | None = None
    phase: str | None = None
    reward_mean: float | None = None
    reward_std: float | None = None
    kl: float | None = None
    completion_length: float | None = None
    tokens_per_second: float | None = None
    loss: float | None = None
    dropped_prompts: int | None = Field(None, description="Selected prompts over a phase's maxPromptLength.")


class PolicyStatus(Model):
    uri: str | None = None
    digest: str | None = None
    identity: str | None = None


class SelectionStatus(Model):
    uri: str | None = None
    manifest: str | None = None
    digest: str | None = None
    identity: str | None = None
    policy: PolicyStatus | None = Field(None, description="The policy the prompts were sampled with.")
    prompts: int | None = None
    selected: int | None = None
    pass_at_1_mean: float | None = None
    pass_at_n_mean: float | None = None
    mean_reward: float | None = None
    selected_pass_at_1_mean: float | None = None
    verdicts: dict[str, int] | None = Field(None, description="Prompts by the rule's verdict (kept, alwaysCorrect, "
                                            "neverCorrect, ...).")


class CurvePoint(Model):
    step: int
    phase: str | None = None
    reward: float | None = None
    kl: float | None = None
    length: float | None = None


class VLMRLStageStatus(CommonStatus):
    progress: RLProgress | None = None
    checkpoint: CheckpointStatus | None = None
    hf: str | None = Field(None, description="URI of the Hugging Face export of the final policy.")
    selection: SelectionStatus | None = None
    curve: list[CurvePoint] | None = Field(None, description="Mean reward, KL and completion length per step "
                                           "(at most 48 points, evenly spaced).")


KIND = KindAPI("VLMRLStage", "vlmrlstages", "vrl", VLMRLStageSpec, VLMRLStageStatus, "Succeeded", [
    PHASE, column("Step", ".status.progress.step", "integer"),
    column("Reward", ".status.progress.rewardMean", "number"),
    column("Selected", ".status.selection.selected", "integer"),
    column("Queue", ".spec.scheduling.queueName"), AGE])
