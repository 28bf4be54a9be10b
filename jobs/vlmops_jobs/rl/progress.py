"""GRPO progress: one JSON line per step on stdout, and `<output>/progress.json` (the operator
mirrors it into status while the stage runs) with the reward curve so far.

The curve is every logged step: {step, phase, reward, rewardStd, kl, length}, steps counted across
phases; the result line carries it downsampled (`curve_points`) for status and the report.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

from vlmops_contract.layouts import rl as layout

from ..common import storage
from ..common.cli import StepFailed
from .common import fault, log

MAX_CURVE_POINTS = 48  # in status: small enough for the result line (4 KiB) and the CR


def curve_points(curve: list[dict[str, Any]], n: int = MAX_CURVE_POINTS) -> list[dict[str, Any]]:
    """At most `n` points of the curve, evenly spaced, first and last kept; fields rounded."""
    if len(curve) > n:
        idx = sorted({round(i * (len(curve) - 1) / (n - 1)) for i in range(n)})
        curve = [curve[i] for i in idx]
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()
             if k in ("step", "phase", "reward", "kl", "length") and v is not None} for p in curve]


class Progress:
    """The stage's progress across phases (written by the main process only)."""

    def __init__(self, output: str, total_steps: int, curve: list[dict[str, Any]] | None = None, every: int = 1):
        self.output, self.total, self.every = output, total_steps, max(every, 1)
        self.curve = list(curve or [])
        self.state: dict[str, Any] = {}
        self.checkpoint: dict[str, Any] | None = None
        self._t = time.monotonic()
        self._tokens: float | None = None

    @staticmethod
    def point(phase: str, step: int, logs: dict[str, Any]) -> dict[str, Any]:
        return {"step": step, "phase": phase, "reward": logs.get("reward"), "rewardStd": logs.get("reward_std"),
                "kl": logs.get("kl"), "length": logs.get("completions/mean_length"), "loss": logs.get("loss")}

    def restore(self, phase: str, offset: int, log_history: list[dict[str, Any]]) -> None:
        """The curve up to a resumed checkpoint, from the trainer state it saved (its log history)."""
        points = [self.point(phase, offset + int(h["step"]), h) for h in log_history if "reward" in h and "step" in h]
        last = max((p["step"] for p in points), default=offset)
        self.curve = [p for p in self.curve if p["step"] <= offset] + points
        self.state = {"step": last, "totalSteps": self.total, "phase": phase}

    def step(self, phase: str, step: int, logs: dict[str, Any]) -> None:
        now = time.monotonic()
        tokens = logs.get("num_tokens")
        tps = None
        if tokens is not None and self._tokens is not None and now > self._t:
            tps = (float(tokens) - self._tokens) / (now - self._t)
        self._t, self._tokens = now, (float(tokens) if tokens is not None else None)
        point = self.point(phase, step, logs)
        self.curve = [p for p in self.curve if p["step"] < step] + [point]
        self.state = {"step": step, "totalSteps": self.total, "phase": phase, "rewardMean": point["reward"],
                      "rewardStd": point["rewardStd"], "kl": point["kl"], "completionLength": point["length"],
                      "loss": point["loss"], "tokensPerSecond": round(tps, 3) if tps is not None else
                      self.state.get("tokensPerSecond")}
        log({"event": "step", **{k: v for k, v in point.items() if v is not None},
             **({"tokensPerSecond": round(tps, 3)} if tps is not None else {})})
        if step % self.every == 0 or step == self.total:
            self.write()

    def write(self) -> None:
        doc = {**{k: v for k, v in self.state.items() if k in layout.PROGRESS_FIELDS and v is not None},
               "checkpoint": self.checkpoint, "curve": curve_points(self.curve, 512),
               "updatedAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        storage.write_json_atomic(storage.join(self.output, layout.PROGRESS), doc)


def check_finite(phase: str, step: int, logs: dict[str, Any]) -> None:
    """A non-finite loss or KL means the weights just took a NaN/inf update: stop before they are
    checkpointed or exported (the next rollout would fail inside sampling with a torch error)."""
    bad = {k: logs[k] for k in ("loss", "kl") if isinstance(logs.get(k), float) and not math.isfinite(logs[k])}
    if bad:
        what = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise StepFailed(f"phase {phase} step {step}: {what} (not finite): training diverged; the phase's "
                         "last checkpoint is kept, nothing after it was saved (lower lr or raise klCoef)")


def callback(progress: Progress | None, phase: str, offset: int, on_save=None):
    """A transformers TrainerCallback: progress per logged step, checkpoint uploads, the fault hook."""
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            check_finite(phase, offset + state.global_step, logs or {})
            if progress is not None and state.is_world_process_zero and logs and "reward" in logs:
                progress.step(phase, offset + state.global_step, logs)

        def on_save(self, args, state, control, **kw):
            if on_save is not None:
                on_save(state)

        def on_step_end(self, args, state, control, **kw):
            fault(f"after-step-{offset + state.global_step}")

    return _Callback()
