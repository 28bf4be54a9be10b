"""`decide()` alone: snapshots built by hand, no API (fake or emulated) anywhere."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from vlmops.kinds import KINDS, build, parse_spec, planned_status
from vlmops.manifests import with_defaults
from vlmops.reconciler import Snapshot, decide
from vlmops_contract.labels import COMPLETION_INDEX_ANNOTATION
from vlmops_contract.result import result_line

REPO = Path(__file__).resolve().parents[2]
AT = "2026-01-01T00:00:00Z"


def _example(name: str) -> dict[str, Any]:
    for f in sorted((REPO / "examples" / "llava-ov-1.5").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc["metadata"]["name"] == name:
                obj = with_defaults(doc)
                obj["metadata"].update(namespace="ns", uid="u-1", generation=1)
                return obj
    raise KeyError(name)


def _snapshot(obj: dict[str, Any], inputs: dict | None = None, children: dict | None = None,
              pods: dict | None = None) -> Snapshot:
    return Snapshot(obj=obj, at=AT, spec=parse_spec(obj), plan=build(obj, inputs or {}),
                    children=children or {}, pods=pods or {})


def _pds() -> tuple[dict[str, Any], dict]:
    """A PackedDataset whose BalancedCorpus is done (only the dataset's own steps are left)."""
    bc = _example("mid-training-85m")
    bc["status"] = planned_status(bc)
    return _example("mid-training-8k"), {("BalancedCorpus", "mid-training-85m"): bc}


def _done(child: dict[str, Any]) -> dict[str, Any]:
    child = copy.deepcopy(child)
    child["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    return child


def _pod(step: str, exit_code: int, message: str) -> dict[str, Any]:
    return {"metadata": {"name": f"{step}-0", "annotations": {COMPLETION_INDEX_ANNOTATION: "0"}},
            "status": {"containerStatuses": [{"name": "main", "state": {"terminated": {
                "exitCode": exit_code, "message": message}}}]}}


def test_a_new_cr_creates_only_its_first_step_and_says_it_runs():
    obj, inputs = _pds()
    d = decide(_snapshot(obj, inputs), KINDS["PackedDataset"])
    assert [s.name for s in d.create] == ["lengths"]
    assert d.status["phase"] == "Running" and d.status["message"].startswith("lengths (1/4)")
    assert ("Normal", "Created") in [e[:2] for e in d.events]


def test_a_step_that_just_succeeded_puts_its_result_in_status_and_the_next_step_is_created():
    obj, inputs = _pds()
    first = build(obj, inputs).steps[0]
    stats = {"samples": 10}
    snap = _snapshot(obj, inputs, children={first.child_name: _done(first.manifest)},
                     pods={"lengths": [_pod("lengths", 0, result_line({"stats": stats}))]})
    d = decide(snap, KINDS["PackedDataset"])
    assert d.status["stats"] == stats
    assert [s.name for s in d.create] == ["plan"]
    assert [c["phase"] for c in d.status["children"]] == ["Succeeded", "Pending"]


def test_a_failed_step_fails_the_cr_with_the_jobs_error_line_and_creates_nothing():
    obj, inputs = _pds()
    first = build(obj, inputs).steps[0]
    failed = copy.deepcopy(first.manifest)
    failed["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}
    snap = _snapshot(obj, inputs, children={first.child_name: failed},
                     pods={"lengths": [_pod("lengths", 2, "loading\nerror: source: no parquet files")]})
    d = decide(snap, KINDS["PackedDataset"])
    assert d.status["phase"] == "Failed" and not d.create
    assert "PodFailurePolicy" in d.status["message"] and "error: source: no parquet files" in d.status["message"]
    assert d.newly_failed == ["Job"]
    again = decide(_snapshot({**obj, "status": d.status}, inputs, children=snap.children, pods=snap.pods),
                   KINDS["PackedDataset"])
    assert again.newly_failed == [] and again.events == []  # counted and announced once


def test_a_cr_whose_every_step_succeeded_is_done_and_a_second_decision_changes_nothing():
    obj, inputs = _pds()
    steps = build(obj, inputs).steps
    children = {s.child_name: _done(s.manifest) for s in steps}
    pods = {s.name: [_pod(s.name, 0, result_line({"output": {"uri": "s3://x"}}))] for s in steps}
    d = decide(_snapshot(obj, inputs, children=children, pods=pods), KINDS["PackedDataset"])
    assert d.status["phase"] == "Ready" and d.status["output"] == {"uri": "s3://x"}
    settled = decide(_snapshot({**obj, "status": d.status}, inputs, children=children), KINDS["PackedDataset"])
    assert settled.status == d.status and not settled.create and not settled.events


def test_a_cr_waiting_for_its_input_creates_nothing():
    obj, _ = _pds()
    d = decide(_snapshot(obj), KINDS["PackedDataset"])
    assert d.status["phase"] == "Pending" and not d.create
    assert "BalancedCorpus/mid-training-85m not found" in d.status["message"]


def test_a_spec_problem_found_before_building_stalls_with_its_field():
    obj, inputs = _pds()
    snap = Snapshot(obj=obj, at=AT, problem="spec.sequenceLength: must be > 0")
    d = decide(snap, KINDS["PackedDataset"])
    stalled = next(c for c in d.status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "InvalidSpec" and not d.create


def test_an_eval_that_misses_a_threshold_fails_after_its_job_succeeded():
    evs = _example("stage-2-eval")
    stage_name = evs["spec"]["model"]["trainingStage"]
    stage = _example(stage_name)
    stage["status"] = planned_status(stage)
    inputs = {("VLMTrainingStage", stage_name): stage}
    (step,) = build(evs, inputs).steps
    results = [{"task": "mmmu_val", "metric": "mmmu_acc", "value": 0.61},
               {"task": "chartqa", "metric": "relaxed_overall", "value": 0.5}]
    snap = _snapshot(evs, inputs, children={step.child_name: _done(step.manifest)},
                     pods={"eval": [_pod("eval", 0, result_line({"results": results}))]})
    d = decide(snap, KINDS["EvalSuite"])
    assert d.status["phase"] == "Failed" and (d.status["passed"], d.status["total"]) == (1, 2)
    assert d.status["failing"] and "chartqa/relaxed_overall" in d.status["failing"][0]
    assert next(c for c in d.status["conditions"] if c["type"] == "Ready")["reason"] == "ThresholdsNotMet"



def test_a_spec_change_mid_run_stops_the_older_generation_before_starting_the_new_one():
    obj, inputs = _pds()
    first = build(obj, inputs).steps[0]
    running = copy.deepcopy(first.manifest)
    running["status"] = {"active": 1, "startTime": AT}
    gen1 = decide(_snapshot(obj, inputs, children={first.child_name: running}), KINDS["PackedDataset"])
    edited = copy.deepcopy(obj)
    edited["metadata"]["generation"] = 2
    edited["status"] = gen1.status
    d = decide(_snapshot(edited, inputs, children={first.child_name: running}), KINDS["PackedDataset"])
    assert d.delete == [("Job", first.child_name)] and not d.create
    assert d.status["phase"] == "Running" and "StoppingOldGeneration" in [c["reason"] for c in d.status["conditions"]]
    being_deleted = copy.deepcopy(running)
    being_deleted["metadata"]["deletionTimestamp"] = AT  # foreground deletion: its pods are still going
    d = decide(_snapshot(edited, inputs, children={first.child_name: being_deleted}), KINDS["PackedDataset"])
    assert d.delete == [] and not d.create  # asked once; still waiting
    gone = decide(_snapshot(edited, inputs, children={first.child_name: None}), KINDS["PackedDataset"])
    assert [s.child_name for s in gone.create] == [first.child_name.replace("-g1", "-g2")] and not gone.delete
