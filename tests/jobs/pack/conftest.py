"""The pack job run in-process, and a tokenizer, for the pack job's tests."""
from __future__ import annotations

import pytest

from vlmops_contract.result import parse_result
from vlmops_jobs.common import synthetic
from vlmops_jobs.pack import JOB


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return synthetic.make_tokenizer(str(tmp_path_factory.mktemp("tok")))


@pytest.fixture
def run_pack(capsys):
    """`python -m vlmops_jobs.pack <argv>` in-process: exits 0; returns the result line's content."""

    def run(*argv: str) -> dict:
        assert JOB.run(list(argv)) == 0, capsys.readouterr().err
        return parse_result(capsys.readouterr().out)

    return run


@pytest.fixture
def run_step():
    """One step's `run` on its parsed flags, without the CLI's error handling (JobError propagates)."""

    def run(step: str, *argv: str) -> dict:
        return JOB.step_module(step).run(JOB.parser(step).parse_args(list(argv)))

    return run
