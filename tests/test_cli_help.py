"""Every `vlmops` command and sub-command answers --help with exit 0 (the tree is walked, so a new
command is covered without an edit here)."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlmops import cli

ROOT = Path(__file__).resolve().parents[1]


def _commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, (*path, name))
    return out


COMMANDS = _commands(cli.parser())


def test_the_walk_finds_every_command():
    names = {" ".join(c) for c in COMMANDS}
    assert {"", "crds", "validate", "render", "operator", "eval", "eval compare", "run", "status", "lineage",
            "diff"} <= names, names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "vlmops")
def test_help_exits_zero(command, capfd):
    try:
        rc = cli.main([*command, "--help"])
    except SystemExit as e:
        rc = e.code
    out, err = capfd.readouterr()
    assert rc in (0, None), err
    assert "usage:" in out and "--help" in out, out


def _vlmops(*args, pythonpath: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlmops", *args], env={"PYTHONPATH": pythonpath, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, cwd=ROOT)


def test_eval_compare_help_as_a_user_runs_it():
    r = _vlmops("eval", "compare", "--help", pythonpath=f"{ROOT / 'operator'}:{ROOT / 'jobs'}")
    assert r.returncode == 0 and "--reference" in r.stdout, r.stderr


def test_eval_compare_without_the_job_package(tmp_path):
    """The operator image holds operator/ and the contract package only: help still answers, a real
    compare says what is missing in one error line."""
    shutil.copytree(ROOT / "jobs" / "vlmops_contract", tmp_path / "vlmops_contract")
    path = f"{ROOT / 'operator'}:{tmp_path}"
    r = _vlmops("eval", "compare", "--help", pythonpath=path)
    assert r.returncode == 0 and "usage: vlmops eval compare" in r.stdout, r.stderr
    r = _vlmops("eval", "compare", "a.json", "b.json", pythonpath=path)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "vlmops_jobs" in r.stderr, r.stderr


HEAVY = ("kopf", "prometheus_client", "kubernetes", "kubeflow", "rich", "requests")


def _heavy_imports(*argv: str) -> set[str]:
    """The heavy top-level packages a command loads (a fresh interpreter, the command run in-process)."""
    code = ("import sys\nfrom vlmops.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": f"{ROOT / 'operator'}:{ROOT / 'jobs'}", "PATH": "/usr/bin:/bin"})
    return set(r.stdout.split("\n")[-2].split())


def test_commands_import_only_what_they_use(tmp_path):
    for command in COMMANDS:
        if command[:2] != ("eval", "compare"):
            assert _heavy_imports(*command, "--help") == set(), command
    assert _heavy_imports("status", "--workdir", str(tmp_path)) == {"rich"}
    # render needs the kubernetes client (typed child models); never the operator's runtime (kopf) nor
    # kubeflow-training's client (~6 s to import: PyTorchJobs are checked against it in tests instead)
    assert not {"kopf", "kubeflow"} & _heavy_imports("render", "-f", str(ROOT / "examples" / "llava-ov-1.5"))
    assert "kopf" not in _heavy_imports("validate", "-f", str(ROOT / "examples" / "llava-ov-1.5"))
