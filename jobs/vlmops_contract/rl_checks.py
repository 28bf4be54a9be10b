"""The RL stage's spec checks, written once (dependency-free), like `stage_checks` for training.

Each rule has one message, a Python check over `RLFacts` and the CEL text the CRD carries. The
API runs the Python checks in its pydantic validation and the job runs them at start (exit 2), so
a VLMRLStage that passes admission is not refused by its own job for a spec reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

REWARDS = ("exact_match", "numeric", "multiple_choice", "format")
TEMPLATES = ("answerOnly", "chainOfThought")
ANSWER_TYPES = ("exact", "numeric", "multiple_choice")
ROLLOUTS = ("hf", "vllm")


@dataclass(frozen=True)
class Phase:
    name: str
    group_size: int
    prompts_per_step: int
    rewards: tuple[str, ...]


@dataclass(frozen=True)
class RLFacts:
    gpus: int
    rollout: str
    phases: tuple[Phase, ...]
    reward_range: tuple[float, float] = (0.0, 1.0)
    selection_rewards: tuple[str, ...] = field(default=("exact_match",))

    @property
    def processes(self) -> int:
        return max(self.gpus, 1)  # one training process per GPU, one on a CPU


@dataclass(frozen=True)
class Rule:
    message: str
    ok: Callable[[RLFacts], bool]
    cel: str


def _unique(xs) -> bool:
    xs = list(xs)
    return len(set(xs)) == len(xs)


RULES = (
    Rule("spec.rollout: vllm generates on GPUs, so gpus must be at least 1",
         lambda f: f.rollout != "vllm" or f.gpus >= 1,
         "self.rollout != 'vllm' || self.gpus >= 1"),
    Rule("spec.rl.phases: promptsPerStep x groupSize must be a multiple of gpus in every phase (each GPU's "
         "process takes an equal share of a step's completions)",
         lambda f: all((p.prompts_per_step * p.group_size) % f.processes == 0 for p in f.phases),
         "self.rl.phases.all(p, (p.promptsPerStep * p.groupSize) % (self.gpus > 0 ? self.gpus : 1) == 0)"),
    Rule("spec.rl.phases: phase names must be unique (they name the phases' checkpoints)",
         lambda f: _unique(p.name for p in f.phases),
         "self.rl.phases.all(p, self.rl.phases.filter(q, q.name == p.name).size() == 1)"),
    Rule("spec.rl.phases: a phase lists each reward once",
         lambda f: all(_unique(p.rewards) for p in f.phases),
         "self.rl.phases.all(p, p.rewards.all(r, p.rewards.filter(x, x == r).size() == 1))"),
    Rule("spec.selection.rewardRange: [lo, hi] with lo <= hi",
         lambda f: len(f.reward_range) == 2 and f.reward_range[0] <= f.reward_range[1],
         "size(self.selection.rewardRange) == 2 && self.selection.rewardRange[0] <= self.selection.rewardRange[1]"),
    Rule("spec.selection.rewards: each reward once",
         lambda f: _unique(f.selection_rewards),
         "self.selection.rewards.all(r, self.selection.rewards.filter(x, x == r).size() == 1)"),
)


def problems(facts: RLFacts) -> list[str]:
    """The messages of every rule `facts` break (empty: the spec is runnable)."""
    return [r.message for r in RULES if not r.ok(facts)]


def cel_rules() -> list[tuple[str, str]]:
    return [(r.cel, r.message) for r in RULES]
