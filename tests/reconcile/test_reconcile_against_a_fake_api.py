"""What the emulator cannot show (no GC, no conflicts, no other controllers): the reconciler and
its helpers against an in-memory fake of `vlmops.kube.Kube`, plus the pure helpers."""
from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from vlmops import mergepatch
from pipeline_driver import example_docs, result_for
from vlmops import childstate, conditions, reconciler
from vlmops.builders import BuildContext
from vlmops.kube import REQUIRED_PERMISSIONS, Kube
from vlmops.kubeapi import CreateRefused
from fake_api import FakeKube

CTX = BuildContext()


def _pds() -> dict[str, Any]:
    return next(d for d in example_docs("ns") if d["metadata"]["name"] == "llava-558k-8k")


def _run(kube: FakeKube, name: str = "llava-558k-8k", kind: str = "PackedDataset") -> reconciler.Outcome:
    return reconciler.reconcile(kube, kind, "ns", name, CTX)


def test_level_based_steps_and_no_writes_when_settled():
    kube = FakeKube([_pds()])
    out = _run(kube)
    assert out.created == ["llava-558k-8k-lengths-g1"] and out.patched
    kube.writes.clear()
    assert not _run(kube).patched and kube.writes == []  # nothing changed: no writes at all
    for step in ("lengths", "plan", "write", "finalize"):
        kube.succeed(f"llava-558k-8k-{step}-g1", result_for("PackedDataset", "llava-558k-8k", step))
        _run(kube)
    st = kube.crs[("PackedDataset", "llava-558k-8k")]["status"]
    assert st["phase"] == "Ready" and st["stats"]["packingEfficiency"] == 0.987
    kube.writes.clear()
    _run(kube)
    assert kube.writes == []  # (no TTL configured here: tests/reconcile/test_ttl_and_runtimes.py)


def test_child_deleted_after_success_is_not_run_again():
    """No GC in the emulator: a finished child that disappears (TTL, manual cleanup) keeps its
    recorded result and is not recreated."""
    kube = FakeKube([_pds()])
    _run(kube)
    kube.succeed("llava-558k-8k-lengths-g1", result_for("PackedDataset", "llava-558k-8k", "lengths"))
    _run(kube)
    del kube.children["llava-558k-8k-lengths-g1"]
    kube.pods.clear()
    kube.writes.clear()
    _run(kube)
    assert ("create", "llava-558k-8k-lengths-g1") not in kube.writes
    st = kube.crs[("PackedDataset", "llava-558k-8k")]["status"]
    assert [c["phase"] for c in st["children"]][:1] == ["Succeeded"]


def test_an_orphaned_child_is_adopted():
    kube = FakeKube([_pds()])
    _run(kube)
    kube.children["llava-558k-8k-lengths-g1"]["metadata"].pop("ownerReferences")
    kube.writes.clear()
    _run(kube)
    assert kube.writes == [("adopt", "llava-558k-8k-lengths-g1")]
    (ref,) = kube.children["llava-558k-8k-lengths-g1"]["metadata"]["ownerReferences"]
    assert ref["uid"] == kube.crs[("PackedDataset", "llava-558k-8k")]["metadata"]["uid"] and ref["controller"]


def test_existing_child_from_another_operator_is_not_recreated():
    kube = FakeKube([_pds()])
    _run(kube)
    other = FakeKube([_pds()])
    other.crs = kube.crs
    other.children = kube.children  # a second (restarted) operator sees the same cluster
    other.writes.clear()
    _run(other)
    assert not [w for w in other.writes if w[0] == "create"]


def test_creating_an_existing_child_absorbs_the_409():
    """Create-if-absent: the emulator returns 409 too, but a create/create race needs two writers."""
    existing = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns", "uid": "u1"}}

    def conflict(*a, **k):
        raise ApiException(status=409, reason="AlreadyExists")

    kube = Kube.__new__(Kube)
    kube._raw = {"_preload_content": False, "_request_timeout": 1.0}
    kube.batch = SimpleNamespace(create_namespaced_job=conflict,
                                 read_namespaced_job=lambda *a, **k: SimpleNamespace(data=json.dumps(existing)))
    assert kube.create_child(dict(existing, metadata={"name": "j", "namespace": "ns"}))["metadata"]["uid"] == "u1"

    def refused(*a, **k):
        raise ApiException(http_resp=SimpleNamespace(status=403, reason="Forbidden", data=json.dumps({
            "message": "jobs.batch \"j\" is forbidden: cannot set blockOwnerDeletion"}).encode(),
            headers={}, getheaders=lambda: {}))

    kube.batch = SimpleNamespace(create_namespaced_job=refused)
    with pytest.raises(CreateRefused, match="cannot set blockOwnerDeletion") as e:
        kube.create_child(existing)
    assert e.value.status == 403

    def unavailable(*a, **k):
        raise ApiException(status=503, reason="ServiceUnavailable")

    kube.batch = SimpleNamespace(create_namespaced_job=unavailable)
    with pytest.raises(ApiException):  # transient: raised for kopf's retry, not a stall
        kube.create_child(existing)


def test_a_refused_create_stalls_the_cr_with_the_servers_message_and_an_event():
    class Refusing(FakeKube):
        def create_child(self, manifest):
            raise CreateRefused(403, "cannot set blockOwnerDeletion if an ownerReference refers to a resource "
                                     "you can't set finalizers on")

    kube = Refusing([_pds()])
    out = _run(kube)
    st = kube.crs[("PackedDataset", "llava-558k-8k")]["status"]
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "CreateRefused"
    assert "llava-558k-8k-lengths-g1" in stalled["message"] and "HTTP 403" in stalled["message"]
    assert "blockOwnerDeletion" in stalled["message"] and out.patched and ("event", "CreateRefused") in kube.writes
    kube.writes.clear()
    _run(kube)  # the resync tries again: still refused, nothing new to write
    assert kube.writes == []


def test_status_patch_conflict_propagates_for_retry():
    """The emulator never conflicts; a real server can (409). The reconciler must raise so kopf retries."""
    kube = FakeKube([_pds()])

    def conflict(*a, **k):
        raise ApiException(status=409, reason="Conflict")

    kube.patch_cr_status = conflict
    with pytest.raises(ApiException):
        _run(kube)


@pytest.mark.parametrize("true, phase", [
    (["Created", "Running", "Succeeded"], "Succeeded"),
    (["Created", "Running", "Failed"], "Failed"),
    (["Succeeded", "Failed"], "Failed"),
    (["Created", "Suspended", "Running"], "Suspended"),
    (["Created", "Restarting"], "Running"),
    (["Created", "Running"], "Running"),
    (["Created"], "Pending"),
    ([], "Pending"),
])
def test_a_pytorchjobs_most_decisive_condition_sets_its_phase(true, phase):
    conds = [{"type": t, "status": "True", "reason": t} for t in true] + [{"type": "Succeeded", "status": "False"}]
    assert childstate.state({"kind": "PyTorchJob", "status": {"conditions": conds}}).phase == phase


@pytest.mark.parametrize("conds, status, phase", [
    ([("FailureTarget", "True")], {}, "Failed"),
    ([("SuccessCriteriaMet", "True")], {}, "Succeeded"),
    ([("Complete", "True")], {"succeeded": 4}, "Succeeded"),
    ([("Suspended", "True")], {}, "Suspended"),
    ([("Complete", "False")], {"active": 2}, "Running"),
    ([], {}, "Pending"),
])
def test_a_jobs_conditions_set_its_phase(conds, status, phase):
    st = dict(status, conditions=[{"type": t, "status": s} for t, s in conds])
    assert childstate.state({"kind": "Job", "spec": {"completions": 4}, "status": st}).phase == phase


def test_condition_last_transition_time_moves_only_on_status_change():
    c1 = conditions.set_condition([], "Ready", "False", "Running", "a", 1, "T1")
    c2 = conditions.set_condition(c1, "Ready", "False", "WaitingForInput", "b", 2, "T2")
    assert c2[0]["lastTransitionTime"] == "T1" and c2[0]["reason"] == "WaitingForInput"
    assert c2[0]["observedGeneration"] == 2
    c3 = conditions.set_condition(c2, "Ready", "True", "Ready", "done", 2, "T3")
    assert c3[0]["lastTransitionTime"] == "T3"
    s = conditions.with_state({}, done_condition="Succeeded", state="Failed", reason="ChildFailed", message="m",
                              generation=3, at="T")
    by = {c["type"]: c["status"] for c in s["conditions"]}
    assert by == {"Ready": "False", "Succeeded": "False", "Reconciling": "False", "Stalled": "True"}
    assert s["phase"] == "Failed" and s["observedGeneration"] == 3


def test_status_diff_ignores_transition_times_only():
    a = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "T1"}]}
    b = copy.deepcopy(a)
    b["conditions"][0]["lastTransitionTime"] = "T2"
    assert not reconciler.status_changed(a, b)
    b["phase"] = "Ready"
    assert reconciler.status_changed(a, b)


@pytest.mark.parametrize("old, new", [
    ({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 2}}),
    ({"a": 1}, {"a": 1, "x": {"y": [1, 2]}}),
    ({"p": "Running", "children": [{"n": 1}]}, {"p": "Ready", "children": [{"n": 1}, {"n": 2}]}),
    ({"stats": {"a": 1}}, {}),
    ({"failing": ["x"]}, {"failing": None}),
])
def test_merge_patch_turns_old_into_new(old, new):
    patch = mergepatch.diff(old, new)
    assert mergepatch.apply(old, patch) == {k: v for k, v in new.items() if v is not None}
    assert mergepatch.diff(new, new) == {}


def test_required_permissions_cover_every_call():
    perms: dict[tuple[str, str], set[str]] = {}
    for p in REQUIRED_PERMISSIONS:
        perms.setdefault((p["apiGroup"], p["resource"]), set()).add(p["verb"])
        want = {"namespaces": "cluster", "customresourcedefinitions": "cluster", "leases": "release"}
        assert p["scope"] == want.get(p["resource"], "ns"), p
    for plural in ("balancedcorpora", "packeddatasets", "vlmtrainingstages", "evalsuites"):
        assert {"get", "list", "watch", "patch"} <= perms[("vlmops.dev", plural)]
        assert {"patch"} <= perms[("vlmops.dev", plural + "/status")]
    assert {"get", "list", "watch", "create", "patch"} <= perms[("batch", "jobs")]
    assert {"get", "list", "watch", "create", "patch"} <= perms[("kubeflow.org", "pytorchjobs")]
    assert {"list"} <= perms[("", "pods")] and {"create"} <= perms[("", "events")]
    assert {"get", "create", "update"} <= perms[("coordination.k8s.io", "leases")]  # leader election


def test_relative_locations_need_a_storage_prefix():
    """The quickstart's relative URIs: rejected with the field path without a prefix, resolved
    against the chart's jobs.storage.prefix with one."""
    pds = _pds()
    pds["spec"]["output"]["uri"] = "runs/packed"
    pds["spec"]["tokenizer"] = "models/tok"
    kube = FakeKube([pds])
    out = _run(kube)
    st = kube.crs[("PackedDataset", "llava-558k-8k")]["status"]
    assert out.created == [] and st["phase"] == "Failed"
    assert "spec.output.uri: relative location 'runs/packed' needs a storage prefix" in st["message"]
    assert "spec.tokenizer" in st["message"]
    kube = FakeKube([pds])
    out = reconciler.reconcile(kube, "PackedDataset", "ns", "llava-558k-8k",
                               BuildContext(storage_prefix="s3://bucket/vlmops"))
    (child,) = out.created
    cmd = kube.children[child]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--output") + 1] == "s3://bucket/vlmops/runs/packed"
    assert cmd[cmd.index("--tokenizer") + 1] == "s3://bucket/vlmops/models/tok"


def _stage_pipeline():
    docs = [d for d in example_docs("ns") if d["metadata"]["name"] in ("llava-558k-8k", "stage-1-alignment")]
    stage = next(d for d in docs if d["kind"] == "VLMTrainingStage")
    stage["spec"].pop("initFrom", None)
    return docs


def _finish_pds(kube):
    _run(kube)
    for step in ("lengths", "plan", "write", "finalize"):
        kube.succeed(f"llava-558k-8k-{step}-g1", result_for("PackedDataset", "llava-558k-8k", step))
        _run(kube)


def test_input_deleted_while_child_runs_still_records_the_outcome():
    """GitOps prune of an input must not hide a running child's result."""
    kube = FakeKube(_stage_pipeline())
    _finish_pds(kube)
    out = _run(kube, "stage-1-alignment", "VLMTrainingStage")
    assert out.created == ["stage-1-alignment-train-g1"]
    del kube.crs[("PackedDataset", "llava-558k-8k")]  # the input disappears mid-training
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    st = kube.crs[("VLMTrainingStage", "stage-1-alignment")]["status"]
    assert st["phase"] == "Running" and "input is gone" in st["message"]
    kube.succeed("stage-1-alignment-train-g1", result_for("VLMTrainingStage", "stage-1-alignment", "train"))
    out = _run(kube, "stage-1-alignment", "VLMTrainingStage")
    st = kube.crs[("VLMTrainingStage", "stage-1-alignment")]["status"]
    assert out.created == [] and st["phase"] == "Succeeded" and st["progress"]["step"]
    kube.writes.clear()
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    assert kube.writes == []  # settled, still no writes


def test_finished_cr_stays_done_when_its_input_is_deleted():
    kube = FakeKube(_stage_pipeline())
    _finish_pds(kube)
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    kube.succeed("stage-1-alignment-train-g1", result_for("VLMTrainingStage", "stage-1-alignment", "train"))
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    del kube.crs[("PackedDataset", "llava-558k-8k")]
    kube.writes.clear()
    _run(kube, "stage-1-alignment", "VLMTrainingStage")
    assert kube.crs[("VLMTrainingStage", "stage-1-alignment")]["status"]["phase"] == "Succeeded"
    assert kube.writes == []


def test_never_started_cr_waits_for_a_missing_input():
    kube = FakeKube(_stage_pipeline())
    del kube.crs[("PackedDataset", "llava-558k-8k")]
    out = _run(kube, "stage-1-alignment", "VLMTrainingStage")
    st = kube.crs[("VLMTrainingStage", "stage-1-alignment")]["status"]
    assert out.created == [] and st["phase"] == "Pending" and "PackedDataset/llava-558k-8k not found" in st["message"]


@pytest.mark.parametrize("edit,words", [
    (lambda pds, st: pds["spec"].update(sequenceLength=32768), "packs 32768-token sequences"),
    (lambda pds, st: pds["spec"].update(image={"patchSize": 14, "mergeSize": 1}), "image tokens on 14 px cells"),
    (lambda pds, st: (st["spec"].update(nodes=16), pds["status"]["stats"].update(sequences=100)),
     "has 100 packed sequences, fewer than the 128 data-parallel ranks"),
])
def test_stage_stalls_before_any_child_when_its_dataset_cannot_feed_the_model(edit, words):
    """What the trainer would refuse at start about its dataset, the operator says first: Stalled
    naming spec.data.packedDataset, and no PyTorchJob asks for GPUs."""
    kube = FakeKube(_stage_pipeline())
    _finish_pds(kube)
    pds = kube.crs[("PackedDataset", "llava-558k-8k")]
    stage = kube.crs[("VLMTrainingStage", "stage-1-alignment")]
    stage["spec"]["batch"]["global"] = 1024
    edit(pds, stage)
    out = _run(kube, "stage-1-alignment", "VLMTrainingStage")
    st = kube.crs[("VLMTrainingStage", "stage-1-alignment")]["status"]
    assert out.created == [] and st["phase"] == "Failed"
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and "spec.data.packedDataset:" in st["message"] and words in st["message"]


def test_a_cr_with_a_100_character_name_gets_valid_labels_and_still_reads_its_results():
    import re

    pds = _pds()
    name = "a" + "-very-long-dataset-name" * 4 + "-x" * 4
    assert len(name) > 63
    pds["metadata"]["name"] = name
    kube = FakeKube([pds])
    reconciler.reconcile(kube, "PackedDataset", "ns", name, CTX)
    (child,) = kube.children.values()
    labels = {**child["metadata"]["labels"], **child["spec"]["template"]["metadata"]["labels"]}
    for value in labels.values():  # what the API server accepts as a label value
        assert len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", value), value
    assert child["metadata"]["annotations"]["vlmops.dev/parent"] == f"PackedDataset/{name}"
    kube.succeed(child["metadata"]["name"], result_for("PackedDataset", name, "lengths"))
    reconciler.reconcile(kube, "PackedDataset", "ns", name, CTX)
    st = kube.crs[("PackedDataset", name)]["status"]
    assert st["stats"]["step"] == "lengths" and len(kube.children) == 2  # its pods were found by label
