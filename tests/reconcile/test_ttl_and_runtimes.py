"""A finished child's time-to-live is set only once its result is in the CR's status, and a stage's
results and status are the same whether its child is a PyTorchJob or a Trainer v2 TrainJob."""
from __future__ import annotations

import copy
import dataclasses

import pytest

from fake_api import FakeKube
from pipeline_driver import example_docs, result_for
from vlmops import childstate, reconciler
from vlmops.builders import BuildContext

CTX = BuildContext(ttl_seconds_after_finished=3600)


def _run(kube, name="llava-558k-8k", kind="PackedDataset", ctx=CTX):
    return reconciler.reconcile(kube, kind, "ns", name, ctx)


def _pds():
    return next(d for d in example_docs("ns") if d["metadata"]["name"] == "llava-558k-8k")


def test_ttl_is_set_after_the_result_is_recorded_never_before():
    kube = FakeKube([_pds()])
    _run(kube)
    kube.succeed("llava-558k-8k-lengths-g1", result_for("PackedDataset", "llava-558k-8k", "lengths"))
    kube.writes.clear()
    _run(kube)  # reads the result into status, starts the next step: the finished child is not touched yet
    assert ("expire", "llava-558k-8k-lengths-g1") not in kube.writes
    assert childstate.ttl_of(kube.children["llava-558k-8k-lengths-g1"]) is None
    assert kube.crs[("PackedDataset", "llava-558k-8k")]["status"]["children"][0]["phase"] == "Succeeded"
    kube.writes.clear()
    _run(kube)  # the result is in the stored status: now it may go
    assert kube.writes == [("expire", "llava-558k-8k-lengths-g1")]
    assert kube.children["llava-558k-8k-lengths-g1"]["spec"]["ttlSecondsAfterFinished"] == CTX.ttl_seconds_after_finished
    kube.writes.clear()
    _run(kube)
    assert kube.writes == []  # set once


def test_failed_children_and_a_disabled_ttl_are_left_alone():
    kube = FakeKube([_pds()])
    ctx = dataclasses.replace(CTX, ttl_seconds_after_finished=None)
    _run(kube, ctx=ctx)
    for step in ("lengths", "plan"):
        kube.succeed(f"llava-558k-8k-{step}-g1", result_for("PackedDataset", "llava-558k-8k", step))
        _run(kube, ctx=ctx)
    _run(kube, ctx=ctx)
    assert not [w for w in kube.writes if w[0] == "expire"]
    kube.children["llava-558k-8k-write-g1"]["status"] = {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
    for _ in range(3):
        _run(kube)  # with a TTL configured: still only the succeeded ones get it (the failed one is kept)
    expired = {w[1] for w in kube.writes if w[0] == "expire"}
    assert expired == {"llava-558k-8k-lengths-g1", "llava-558k-8k-plan-g1"}


def _stage_started(runtime: str) -> FakeKube:
    """The packed dataset done and stage-1 with its training child created, on `runtime`."""
    docs = [d for d in example_docs("ns") if d["metadata"]["name"] in ("llava-558k-8k", "stage-1-alignment")]
    stage = next(d for d in docs if d["kind"] == "VLMTrainingStage")
    stage["spec"].pop("initFrom", None)
    stage["spec"]["scheduling"] = {"queueName": "vlm-training"}  # TrainJob: the runtime sets the priority
    stage["spec"]["runtime"] = runtime
    kube = FakeKube(docs)
    _run(kube)
    for step in ("lengths", "plan", "write", "finalize"):
        kube.succeed(f"llava-558k-8k-{step}-g1", result_for("PackedDataset", "llava-558k-8k", step))
        _run(kube)
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    return kube


def _stage_run(runtime: str):
    kube = _stage_started(runtime)
    child = kube.children["stage-1-alignment-train-g1"]
    running = copy.deepcopy(kube.crs[("VLMTrainingStage", "stage-1-alignment")]["status"])
    kube.succeed("stage-1-alignment-train-g1", result_for("VLMTrainingStage", "stage-1-alignment", "train"))
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    done = kube.crs[("VLMTrainingStage", "stage-1-alignment")]["status"]
    return child, running, done


def _comparable(status):
    """The status without times and with the child's kind named alike (messages say which it is)."""
    s = copy.deepcopy(status)
    if s.get("message"):
        s["message"] = s["message"].replace("TrainJob", "PyTorchJob")
    for c in s.get("conditions") or []:
        c.pop("lastTransitionTime", None)
        c["message"] = c.get("message", "").replace("TrainJob", "PyTorchJob")
    for key in ("startTime", "completionTime"):
        s.pop(key, None)
    for c in s.get("children") or []:
        c.pop("apiVersion"), c.pop("kind")
    return s


def test_a_stage_has_the_same_status_and_results_with_either_runtime():
    pj, pj_running, pj_done = _stage_run("PyTorchJob")
    tj, tj_running, tj_done = _stage_run("TrainJob")
    assert (pj["kind"], tj["kind"]) == ("PyTorchJob", "TrainJob")
    assert pj_done["phase"] == "Succeeded" and pj_done.get("hf")
    assert _comparable(tj_running) == _comparable(pj_running)
    assert _comparable(tj_done) == _comparable(pj_done)
    assert tj_done["children"][0]["kind"] == "TrainJob" and tj_done["job"] == pj_done["job"]


@pytest.mark.parametrize("conds, jobs, phase", [
    ([("Failed", "True")], [], "Failed"),
    ([("Complete", "True")], [], "Succeeded"),
    ([("Suspended", "True")], [], "Suspended"),
    ([("Created", "True")], [{"name": "node", "active": 2, "succeeded": 0}], "Running"),
    ([("Created", "True")], [], "Pending"),
    ([("Complete", "False"), ("Created", "True")], [], "Pending"),
])
def test_a_trainjobs_conditions_set_its_phase(conds, jobs, phase):
    st = {"conditions": [{"type": t, "status": s, "reason": t} for t, s in conds], "jobsStatus": jobs}
    assert childstate.state({"kind": "TrainJob", "status": st}).phase == phase


def _ago(seconds: int) -> str:
    import datetime as dt

    t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _finished_trainjob(seconds_ago: int, ok: bool = True) -> dict:
    cond = {"type": "Complete" if ok else "Failed", "status": "True", "lastTransitionTime": _ago(seconds_ago)}
    return {"kind": "TrainJob", "metadata": {"name": "s-train-g1"}, "status": {"conditions": [cond]}}


@pytest.mark.parametrize("ago, ok, kind, recorded, ttl, due", [
    (3601, True, "TrainJob", "Succeeded", 3600, True),
    (3500, True, "TrainJob", "Succeeded", 3600, False),  # not yet
    (3601, True, "TrainJob", "Running", 3600, False),  # its result is not in status yet
    (3601, True, "TrainJob", None, 3600, False),
    (3601, False, "TrainJob", "Failed", 3600, False),  # failed ones are kept to debug
    (3601, True, "TrainJob", "Succeeded", None, False),  # TTL off in the chart
    (3601, True, "Job", "Succeeded", 3600, False),  # Jobs have their own TTL field
    (None, True, "TrainJob", "Succeeded", 0, False),  # no finishing time: never guessed
])
def test_when_a_finished_trainjob_is_due_for_deletion(ago, ok, kind, recorded, ttl, due):
    child = {**_finished_trainjob(ago or 0, ok), "kind": kind}  # times taken now, not at collection
    if ago is None:
        del child["status"]["conditions"][0]["lastTransitionTime"]
    assert childstate.reap_due(child, recorded, ttl, _ago(0)) is due


def test_a_succeeded_trainjob_is_deleted_after_the_ttl_and_the_stage_keeps_its_result():
    """Trainer v2.3's TrainJob has no ttlSecondsAfterFinished: the reconciler deletes it once its result
    is in the stage's status and the chart's TTL has passed since it finished; the done stage keeps
    being resynced until then, not after."""
    from vlmops.handlers import Operator

    kube = _stage_started("TrainJob")
    name = "stage-1-alignment-train-g1"
    kube.succeed(name, result_for("VLMTrainingStage", "stage-1-alignment", "train"))
    finished = kube.children[name]["status"]["conditions"][0]
    finished["lastTransitionTime"] = _ago(7200)
    kube.writes.clear()
    _run(kube, "stage-1-alignment", "VLMTrainingStage")  # reads the result into status: kept this pass
    assert name in kube.children and not [w for w in kube.writes if w[0] == "delete"]
    st = kube.crs[("VLMTrainingStage", "stage-1-alignment")]
    op = Operator(CTX, resync_interval=60)
    assert op.needs_resync(st, "Succeeded")  # done, but its TrainJob waits for the TTL
    finished["lastTransitionTime"] = _ago(60)
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    assert name in kube.children  # finished a minute ago
    finished["lastTransitionTime"] = _ago(CTX.ttl_seconds_after_finished + 1)
    kube.writes.clear()
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    assert kube.writes == [("delete", name)] and name not in kube.children
    kube.writes.clear()
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    st = kube.crs[("VLMTrainingStage", "stage-1-alignment")]
    assert st["status"]["phase"] == "Succeeded" and st["status"]["children"][0]["phase"] == "Succeeded"
    assert st["status"].get("hf") and kube.writes == []  # not run again, nothing rewritten
    st["status"]["completionTime"] = _ago(CTX.ttl_seconds_after_finished + 181)
    assert not op.needs_resync(st, "Succeeded")  # past the TTL and three resyncs: left alone
    assert not Operator(dataclasses.replace(CTX, ttl_seconds_after_finished=None)).needs_resync(st, "Succeeded")
