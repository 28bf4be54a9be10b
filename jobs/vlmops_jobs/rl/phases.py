"""The `rl.phases` list as the train step reads it (`--phases`, the spec's JSON), checked once
with the contract's rules (`vlmops_contract.rl_checks`): the API runs the same checks."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vlmops_contract import rl_checks

from ..common.result import JobError

# wire name -> (attribute, type, lower bound, bound excluded, default); the API's fields and defaults
FIELDS: dict[str, tuple[str, type, float | None, bool, Any]] = {
    "name": ("name", str, None, False, None),
    "template": ("template", str, None, False, "answerOnly"),
    "rewards": ("rewards", list, None, False, None),
    "steps": ("steps", int, 1, False, None),
    "groupSize": ("group_size", int, 2, False, 8),
    "promptsPerStep": ("prompts_per_step", int, 1, False, 1),
    "klCoef": ("kl_coef", float, 0, False, 0.04),
    "lr": ("lr", float, 0, True, 1e-6),
    "maxPromptLength": ("max_prompt_length", int, 1, False, 8192),
    "maxCompletionLength": ("max_completion_length", int, 1, False, 1024),
    "temperature": ("temperature", float, 0, True, 1.0),
}


@dataclass(frozen=True)
class Phase:
    name: str
    template: str
    rewards: tuple[str, ...]
    steps: int
    group_size: int
    prompts_per_step: int
    kl_coef: float
    lr: float
    max_prompt_length: int
    max_completion_length: int
    temperature: float

    def wire(self) -> dict[str, Any]:
        return {w: (list(getattr(self, a)) if a == "rewards" else getattr(self, a)) for w, (a, *_) in FIELDS.items()}


def _phase(i: int, d: Any) -> Phase:
    if not isinstance(d, dict):
        raise JobError(f"spec.rl.phases[{i}]: not an object")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise JobError(f"spec.rl.phases[{i}]: unknown field(s) {', '.join(unknown)}")
    kw: dict[str, Any] = {}
    for wire, (attr, typ, lower, strict, default) in FIELDS.items():
        v = d.get(wire, default)
        if v is None:
            raise JobError(f"spec.rl.phases[{i}].{wire}: required")
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise JobError(f"spec.rl.phases[{i}].{wire}: {v!r} is not a {typ.__name__}")
        if lower is not None and (v <= lower if strict else v < lower):
            raise JobError(f"spec.rl.phases[{i}].{wire}: {v!r} must be {'>' if strict else '>='} {lower}")
        kw[attr] = v
    if kw["template"] not in rl_checks.TEMPLATES:
        raise JobError(f"spec.rl.phases[{i}].template: {kw['template']!r} is not one of {', '.join(rl_checks.TEMPLATES)}")
    bad = [r for r in kw["rewards"] if r not in rl_checks.REWARDS]
    if not kw["rewards"] or bad:
        raise JobError(f"spec.rl.phases[{i}].rewards: {', '.join(map(str, bad)) or '(none)'} not in "
                       f"{', '.join(rl_checks.REWARDS)}")
    kw["rewards"] = tuple(kw["rewards"])
    return Phase(**kw)


def parse(text: str, gpus: int, rollout: str) -> list[Phase]:
    """The phases of `--phases`, or JobError naming the field (the API's messages)."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise JobError(f"spec.rl.phases: not JSON ({e})") from None
    if not isinstance(raw, list) or not raw:
        raise JobError("spec.rl.phases: a non-empty list of phases")
    phases = [_phase(i, d) for i, d in enumerate(raw)]
    bad = rl_checks.problems(rl_checks.RLFacts(
        gpus=gpus, rollout=rollout,
        phases=tuple(rl_checks.Phase(p.name, p.group_size, p.prompts_per_step, p.rewards) for p in phases)))
    if bad:
        raise JobError("; ".join(bad))
    return phases
