"""The job's command line: `python -m vlmops_jobs.balance <step> [flags]` (vlmops_jobs.common.cli)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vlmops_jobs.balance import JOB

ROOT = Path(__file__).resolve().parents[3]


def _python(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "jobs"), str(ROOT / "operator")]))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_importing_the_job_loads_no_numerical_library():
    p = _python("-c", "import sys, vlmops_jobs.balance; "
                      "print([m for m in ('numpy', 'pyarrow', 'faiss', 'torch') if m in sys.modules])")
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr


def test_an_unknown_or_missing_step_is_bad_input(capsys):
    for argv in (["reduce"], []):
        assert JOB.run(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: arguments: step") and "embed, retrieve, balance" in err


def test_every_step_has_help_and_a_result_returning_run():
    assert JOB.steps == ("embed", "retrieve", "balance")
    for step in JOB.steps:
        assert JOB.parser(step).description and callable(JOB.step_module(step).run)
    p = _python("-m", "vlmops_jobs.balance", "balance", "--help")
    assert p.returncode == 0 and "--part-rows" in p.stdout and "--target-samples" in p.stdout


def test_a_part_rows_below_one_is_bad_input_before_anything_is_read(tmp_path, capsys):
    assert JOB.run(["balance", "--part-rows", "0", "--output", f"file://{tmp_path}/none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: balance part-rows: 0 must be >= 1"]
