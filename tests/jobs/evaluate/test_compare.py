"""`python -m vlmops_jobs.evaluate compare`: reference numbers, the table, JSON rows, bad input."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from vlmops_jobs.evaluate import JOB, compare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_reference_numbers_ship_as_package_data_in_lmms_eval_units():
    refs = compare.references()["llava-ov-1.5-8b"]["results"]
    by_task = {r["task"]: r for r in refs}
    assert {k: by_task[k]["reported"] for k in by_task} == {
        "mmmu_val": 55.4, "mmbench_en_dev": 84.1, "docvqa_val": 95.0, "chartqa": 86.5}
    for r in refs:  # value is in lmms-eval units
        assert math.isclose(r["value"] * r["scale"], r["reported"])
    assert by_task["chartqa"]["metric"] == "relaxed_overall"


def test_compare_prints_deltas_against_b_and_the_reference(tmp_path, capsys):
    a = {"lmmsEvalVersion": "0.7.3", "partial": False,
         "results": [{"task": "mmmu_val", "metric": "mmmu_acc", "value": 0.5},
                     {"task": "chartqa", "metric": "relaxed_overall", "value": 0.8}]}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(a))
    raw_b = {"results": {"mmmu_val": {"alias": "mmmu_val", "mmmu_acc,none": 0.52}}}
    (tmp_path / "b.json").write_text(json.dumps(raw_b))

    rows = compare.compare_rows(compare.load_results(str(tmp_path / "a")), compare.load_results(str(tmp_path / "b.json")),
                                compare.reference_results("llava-ov-1.5-8b"))
    mmmu = next(r for r in rows if r["task"] == "mmmu_val")
    assert math.isclose(mmmu["delta"], 0.02) and math.isclose(mmmu["aVsRef"], 0.5 - 0.554)
    chart = next(r for r in rows if r["task"] == "chartqa")
    assert chart["b"] is None and chart["delta"] is None and math.isclose(chart["aVsRef"], 0.8 - 0.865)
    assert {r["task"] for r in rows} == {"mmmu_val", "chartqa", "mmbench_en_dev", "docvqa_val"}

    assert JOB.run(["compare", f"file://{tmp_path}/a", str(tmp_path / "b.json"), "--reference", "llava-ov-1.5-8b"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["task", "metric", "a", "b.json", "b.json-a", "llava-ov-1.5-8b", "a-llava-ov-1.5-8b",
                              "b.json-llava-ov-1.5-8b"]
    line = next(l for l in out if l.startswith("mmmu_val"))
    assert line.split() == ["mmmu_val", "mmmu_acc", "0.5000", "0.5200", "+0.0200", "0.5540", "-0.0540", "-0.0340"]
    assert next(l for l in out if l.startswith("docvqa_val")).split()[2:5] == ["-", "-", "-"]

    # one side only, against the reference; an EvalSuite object as YAML; JSON rows
    evs = tmp_path / "evs.yaml"
    evs.write_text("apiVersion: vlmops.dev/v1alpha1\nkind: EvalSuite\nstatus:\n  results:\n"
                   "  - {task: docvqa_val, metric: anls, value: 0.9}\n")
    assert JOB.run(["compare", str(evs), "--reference", "ref:llava-ov-1.5-8b", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    doc = next(r for r in rows if r["task"] == "docvqa_val")
    assert doc["a"] == 0.9 and math.isclose(doc["aVsRef"], -0.05) and "b" not in doc


@pytest.mark.parametrize("argv,message", [
    (["{tmp}/nope.json", "--reference", "llava-ov-1.5-8b"], "not found"),
    (["ref:llava-ov-1.5-400b", "ref:llava-ov-1.5-8b"], "unknown"),
    (["ref:llava-ov-1.5-8b"], "two evaluations"),
])
def test_compare_bad_input_exits_2_with_one_error_line(tmp_path, capsys, argv, message):
    assert JOB.run(["compare", *(a.format(tmp=tmp_path) for a in argv)]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.startswith("error: ") and message in cap.err and len(cap.err.splitlines()) == 1


def test_compare_help_exits_0_as_vlmops_eval_compare_runs_it():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "jobs"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "vlmops_jobs.evaluate", "compare", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: python -m vlmops_jobs.evaluate compare") and "--reference" in p.stdout


def test_tolerances_mark_each_row_and_check_exits_1_outside(tmp_path, capsys):
    a = {"results": [{"task": "t1", "metric": "acc", "value": 0.50}, {"task": "t2", "metric": "acc", "value": 0.70},
                     {"task": "t3", "metric": "acc", "value": 0.10}]}
    b = {"results": [{"task": "t1", "metric": "acc", "value": 0.505}, {"task": "t2", "metric": "acc", "value": 0.60}]}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    argv = ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--tolerance", "0.01"]
    assert JOB.run([*argv, "--json"]) == 0  # without --check the rows are marked, nothing fails
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["t1"]["within"] is True and rows["t2"]["within"] is False and rows["t3"]["within"] is False
    assert rows["t1"]["tolerance"] == 0.01
    # a per-metric tolerance overrides the default; t3 is missing in B, which --check counts as outside
    assert JOB.run([*argv, "--tolerance", "t2/acc=0.2", "--check"]) == 1
    cap = capsys.readouterr()
    assert next(l for l in cap.out.splitlines() if l.startswith("t2")).split()[-2:] == ["0.2", "yes"]
    assert next(l for l in cap.out.splitlines() if l.startswith("t1")).split()[-2:] == ["0.01", "yes"]
    assert cap.err.strip() == "error: compare: 1 metric(s) outside tolerance: t3/acc: missing on one side"
    assert JOB.run([*argv, "--tolerance", "t2/acc=0.2", "--tolerance", "t3/acc=1", "--check"]) == 1  # still missing
    capsys.readouterr()
    assert JOB.run(["compare", str(tmp_path / "b.json"), str(tmp_path / "b.json"), "--tolerance", "0", "--check"]) == 0
    assert JOB.run([*argv, "--tolerance", "nope/acc=-1"]) == 2
    assert JOB.run([*argv, "--tolerance", "t9/acc=0.1"]) == 2
    assert "t9/acc is in neither evaluation" in capsys.readouterr().err


def test_vlmops_eval_compare_help_answers():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "operator"), os.path.join(ROOT, "jobs"),
                                                        os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "vlmops", "eval", "compare", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "--tolerance" in p.stdout and "--check" in p.stdout
