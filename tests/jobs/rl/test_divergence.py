"""A GRPO step whose loss or KL is not finite stops the job (exit 1, one `error:` line naming the
phase and step) before the NaN weights are checkpointed, exported or sampled from."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from vlmops_jobs.common.cli import StepFailed
from vlmops_jobs.rl.progress import callback, check_finite

pytest.importorskip("transformers")


@pytest.mark.parametrize("logs", [{"loss": math.nan, "kl": 0.1}, {"loss": 0.2, "kl": math.inf},
                                  {"loss": -math.inf}])
def test_a_non_finite_loss_or_kl_fails_the_step_with_the_phase_and_step(logs):
    with pytest.raises(StepFailed, match=r"phase again step 7: .*not finite"):
        check_finite("again", 7, logs)


def test_finite_or_missing_values_pass():
    check_finite("answer", 1, {"loss": 0.0, "kl": 0.0, "reward": 1.0})
    check_finite("answer", 1, {"reward": math.nan})  # a reward is data, not the weights' health
    check_finite("answer", 1, {})


def test_the_trainer_callback_checks_every_logged_step_before_the_save_that_follows():
    cb = callback(None, "again", 5)
    state = SimpleNamespace(global_step=2, is_world_process_zero=True)
    cb.on_log(None, state, None, logs={"loss": 0.5, "kl": 0.01})
    with pytest.raises(StepFailed, match="phase again step 7"):
        cb.on_log(None, state, None, logs={"loss": math.nan, "kl": 0.01})
