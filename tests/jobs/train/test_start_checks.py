"""The training job refuses bad flags and missing inputs before any process group starts (exit 2)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlmops_jobs.common.result import JobError
from vlmops_jobs.train import JOB, trainer

REPO = Path(__file__).resolve().parents[3]


def args(*extra):
    return JOB.parser("trainer").parse_args(["--data", "x", "--tokenizer", "y", "--train-iters", "10", *extra])


@pytest.mark.parametrize("extra,world,msg", [
    (["--tensor", "3"], 3, "tensor 3 does not divide language heads 4"),
    (["--tensor", "2"], 3, r"must be divisible by tensor\*pipeline\*context"),
    (["--pipeline", "2"], 2, "pipeline"),
    (["--micro-batch", "2"], 2, "spec.batch.micro: must be 1"),
    (["--sequence-parallel"], 1, "spec.parallelism.sequenceParallel"),
    (["--global-batch", "3"], 2, "multiple of the data-parallel size"),
    (["--trainable", "projector,decoder"], 1, "trainable"),
])
def test_bad_flags_are_refused_before_any_process_group(extra, world, msg):
    with pytest.raises(JobError, match=msg):
        trainer.validate(args(*extra), world)


def test_an_attention_backend_the_machine_cannot_train_with_is_refused():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        assert trainer.validate(args(), 1).attention in ("te", "varlen")
        return
    assert trainer.validate(args(), 1).attention == "local"
    assert trainer.validate(args("--attention", "sdpa"), 1).attention == "sdpa"
    for backend in ("varlen", "te", "flex"):
        with pytest.raises(JobError, match=f"attention '{backend}' cannot run on cpu"):
            trainer.validate(args("--attention", backend), 1)


def test_missing_inputs_exit_2_with_one_error_line(tmp_path):
    pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'jobs'}:{REPO / 'operator'}", VLMOPS_TERMINATION_LOG=os.devnull)
    p = subprocess.run([sys.executable, "-m", "vlmops_jobs.train", "--data", f"file://{tmp_path}/none", "--tokenizer",
                        str(tmp_path), "--train-iters", "1"], env=env, capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: tokenizer")
