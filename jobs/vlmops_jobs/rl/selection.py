"""The discrepancy rule: which prompts GRPO trains on. Pure functions, no I/O.

For one prompt, N responses sampled from the current policy with rewards r_1..r_N and c of them
correct (r_i >= the correct reward, 1 by default):

    Pass@1 = c / N                 (the chance one sample is correct)
    Pass@N = 1 if c > 0 else 0     (whether any of the N samples is)
    mean reward = (r_1 + ... + r_N) / N

A prompt is kept when the two disagree and its mean reward lies in the range:

    Pass@1 < Pass@N  and  Pass@N >= passAtNMin  and  Pass@1 <= passAt1Max  and  lo <= mean <= hi

so prompts the policy always solves (nothing left to learn) and never solves (no reward signal for
a group of samples: every advantage is 0) are left out. With `maxPrompts`, the kept prompts are
subsampled uniformly by a seeded hash of their id (the same subset for any shard count).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

# the verdicts, in the order they are checked (the first that applies is the prompt's)
ALWAYS_CORRECT = "alwaysCorrect"
NEVER_CORRECT = "neverCorrect"
PASS_AT_N_LOW = "passAtNBelowMin"
PASS_AT_1_HIGH = "passAt1AboveMax"
REWARD_OUT_OF_RANGE = "rewardOutOfRange"
OVER_CAP = "overMaxPrompts"
KEPT = "kept"
VERDICTS = (KEPT, ALWAYS_CORRECT, NEVER_CORRECT, PASS_AT_N_LOW, PASS_AT_1_HIGH, REWARD_OUT_OF_RANGE, OVER_CAP)


@dataclass(frozen=True)
class PromptStats:
    samples: int
    correct: int
    pass_at_1: float
    pass_at_n: float
    mean_reward: float
    reward_std: float

    def wire(self) -> dict[str, float | int]:
        return {"samples": self.samples, "correct": self.correct, "passAt1": self.pass_at_1,
                "passAtN": self.pass_at_n, "meanReward": self.mean_reward, "rewardStd": self.reward_std}


def prompt_stats(rewards: Sequence[float], correct_reward: float = 1.0) -> PromptStats:
    """Pass@1, Pass@N and the reward's mean / population std over one prompt's N samples."""
    n = len(rewards)
    if n == 0:
        raise ValueError("a prompt needs at least one sampled response")
    c = sum(1 for r in rewards if r >= correct_reward)
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n)
    return PromptStats(n, c, round(c / n, 12), 1.0 if c else 0.0, round(mean, 12), round(std, 12))


@dataclass(frozen=True)
class Rule:
    pass_at_n_min: float = 1.0
    pass_at_1_max: float = 1.0
    reward_lo: float = 0.0
    reward_hi: float = 1.0

    def verdict(self, s: PromptStats) -> str:
        if s.pass_at_1 >= 1.0:
            return ALWAYS_CORRECT
        if s.pass_at_n <= 0.0:
            return NEVER_CORRECT
        if s.pass_at_n < self.pass_at_n_min:
            return PASS_AT_N_LOW
        if s.pass_at_1 > self.pass_at_1_max:
            return PASS_AT_1_HIGH
        if not self.reward_lo <= s.mean_reward <= self.reward_hi:
            return REWARD_OUT_OF_RANGE
        return KEPT

    def keep(self, s: PromptStats) -> bool:
        return self.verdict(s) == KEPT


def draw_key(prompt_id: str, seed: int) -> int:
    """A uniform 64-bit key per (id, seed): the order in which kept prompts survive a cap."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:8], "big")


def cap(kept_ids: Iterable[str], max_prompts: int | None, seed: int) -> set[str]:
    """The ids that survive `max_prompts` (all of them without a cap)."""
    ids = list(kept_ids)
    if max_prompts is None or len(ids) <= max_prompts:
        return set(ids)
    return set(sorted(ids, key=lambda i: (draw_key(i, seed), i))[:max_prompts])


def select(stats: dict[str, PromptStats], rule: Rule, max_prompts: int | None = None, seed: int = 0
           ) -> dict[str, str]:
    """{prompt id: verdict} for every prompt; `KEPT` ones are the selection."""
    verdicts = {pid: rule.verdict(s) for pid, s in stats.items()}
    survivors = cap([p for p, v in verdicts.items() if v == KEPT], max_prompts, seed)
    return {p: (OVER_CAP if v == KEPT and p not in survivors else v) for p, v in verdicts.items()}
