"""The learning-rate schedule: linear warmup, then cosine (or linear, constant) down to min-lr."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

from vlmops_jobs.train import JOB, optim  # noqa: E402


def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    a = JOB.parser("trainer").parse_args(["--data", "x", "--tokenizer", "y", "--train-iters", "10",
                            "--lr", "1e-3", "--min-lr", "1e-4", "--warmup-fraction", "0.2"])
    lrs = [optim.lr_at(s, a) for s in range(10)]
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert all(x >= y for x, y in zip(lrs[1:], lrs[2:]))
    assert lrs[-1] > 1e-4 and optim.lr_at(10, a) == pytest.approx(1e-4)
