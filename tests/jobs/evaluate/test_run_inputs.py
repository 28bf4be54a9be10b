"""`run`'s flags: value parsing errors, and that parsing them never loads lmms-eval or torch."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vlmops_jobs.common.result import JobError
from vlmops_jobs.evaluate import inputs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_model_args_tasks_and_limit_parse_or_name_the_bad_field():
    assert inputs.parse_model_args("max_pixels=1605632, attn_implementation=sdpa") == {
        "max_pixels": "1605632", "attn_implementation": "sdpa"}
    with pytest.raises(JobError, match="pretrained"):
        inputs.parse_model_args("pretrained=/x")
    with pytest.raises(JobError, match="key=value"):
        inputs.parse_model_args("max_pixels")
    assert inputs.parse_tasks("a, b,a,,c") == ["a", "b", "c"]
    with pytest.raises(JobError):
        inputs.parse_tasks(" , ")
    assert inputs.parse_limit("5") == 5 and inputs.parse_limit("0.5") == 0.5 and inputs.parse_limit(None) is None
    with pytest.raises(JobError):
        inputs.parse_limit("-1")


def test_the_job_and_both_step_parsers_load_without_lmms_eval_or_torch():
    code = ("import sys; from vlmops_jobs.evaluate import JOB; JOB.parser('run'); JOB.parser('compare'); "
            "print(sorted(m for m in ('lmms_eval', 'torch', 'transformers') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "jobs"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
