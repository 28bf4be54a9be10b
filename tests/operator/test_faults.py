"""Faults injected into the emulated API server while the real operator runs: each CR still ends in
the right phase within one resync period, with no duplicate child and no lost result."""
from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from operator_harness import (API_TIMEOUT_SECONDS, FAULTS_NAMESPACE, RESYNC_SECONDS, TEST_UA, OperatorProcess,
                              wait_for)
from pipeline_driver import Cluster

NS = FAULTS_NAMESPACE
# One resync period plus room for a reconcile on a busy 2-core machine.
WITHIN = RESYNC_SECONDS * 2 + 20


@pytest.fixture(scope="module")
def fault_operator(kubeconfig_path):
    """An operator of its own (the shared one's log must stay free of errors)."""
    op = OperatorProcess(kubeconfig_path, Path(tempfile.mkdtemp(prefix="vlmops-faults-")), [NS]).start()
    try:
        yield op
    finally:
        op.stop()


pytestmark = pytest.mark.usefixtures("fault_operator")


def _eval_suite(name: str) -> dict:
    return {"apiVersion": "vlmops.dev/v1alpha1", "kind": "EvalSuite", "metadata": {"name": name, "namespace": NS},
            "spec": {"model": {"checkpoint": "s3://models/ckpt"}, "lmmsEval": {"tasks": ["mmmu_val"]},
                     "thresholds": {"mmmu_val/mmmu_acc": 0.5}, "output": {"uri": f"s3://evals/{name}"}}}


def _children(c: Cluster, cr: str) -> list[dict]:
    return [j for j in c.children() if j["metadata"]["labels"].get("vlmops.dev/name") == cr]


def _phase(c: Cluster, name: str) -> str | None:
    return (c.get("EvalSuite", name).get("status") or {}).get("phase")


def test_a_500_on_the_final_status_patch_is_healed_by_the_resync(api_client, emulator):
    c = Cluster(api_client, NS)
    c.create(_eval_suite("patch-500"))
    (child,) = wait_for(lambda: _children(c, "patch-500"), what="the eval Job")
    fault = emulator.inject("PATCH", r"/evalsuites/patch-500/status$", status=500)
    c.finish(child)
    wait_for(lambda: fault.hits == 1, what="the injected 500")
    wait_for(lambda: _phase(c, "patch-500") == "Succeeded", timeout=WITHIN, what="Succeeded after the resync")
    st = c.get("EvalSuite", "patch-500")["status"]
    assert st["passed"] == 1 and st["total"] == 1 and len(st["results"]) == 4  # the result was not lost
    assert len(_children(c, "patch-500")) == 1


def test_hung_gets_time_out_and_other_crs_still_get_their_children(api_client, emulator, fault_operator):
    c = Cluster(api_client, NS)
    fault = emulator.inject("GET", r"/evalsuites/hung-\d$", delay=120.0, times=8)  # as many as kopf's workers
    for i in range(8):
        c.create(_eval_suite(f"hung-{i}"))
    wait_for(lambda: fault.hits >= 4, timeout=WITHIN, what="reconciles stuck on hung GETs")
    c.create(_eval_suite("not-hung"))
    wait_for(lambda: _children(c, "not-hung"), timeout=API_TIMEOUT_SECONDS * 4 + 20,
             what="a child for the CR whose reads do not hang")
    with urllib.request.urlopen(f"http://127.0.0.1:{fault_operator.health_port}/healthz", timeout=5) as r:
        assert r.status == 200 and json.loads(r.read())["healthy"] is True
    for i in range(8):  # once the fault is spent, the timed-out reconciles are retried
        wait_for(lambda i=i: _children(c, f"hung-{i}"), timeout=WITHIN + 60, what=f"a child for hung-{i}")


def test_a_child_deleted_while_running_is_recreated_and_one_deleted_after_failing_is_retried(api_client):
    c = Cluster(api_client, NS)
    c.create(_eval_suite("deleted"))
    (first,) = wait_for(lambda: _children(c, "deleted"), what="the eval Job")
    name = first["metadata"]["name"]
    batch = client.BatchV1Api(api_client)
    batch.delete_namespaced_job(name, NS)
    again = wait_for(lambda: [j for j in _children(c, "deleted") if j["metadata"]["uid"] != first["metadata"]["uid"]],
                     timeout=WITHIN, what="the Job recreated after its deletion")
    assert [j["metadata"]["name"] for j in again] == [name]
    c.finish(again[0], ok=False)
    wait_for(lambda: _phase(c, "deleted") == "Failed", timeout=WITHIN, what="Failed")
    batch.delete_namespaced_job(name, NS)  # a user's retry: delete the failed Job
    wait_for(lambda: [j for j in _children(c, "deleted") if j["metadata"]["uid"] != again[0]["metadata"]["uid"]],
             timeout=WITHIN, what="the failed Job recreated")
    wait_for(lambda: _phase(c, "deleted") == "Running", timeout=WITHIN, what="Running again")
    assert len(_children(c, "deleted")) == 1


def test_a_spec_change_mid_run_deletes_the_running_generation_before_the_next_starts(api_client, emulator):
    c = Cluster(api_client, NS)
    c.create(_eval_suite("edited"))
    (g1,) = wait_for(lambda: _children(c, "edited"), what="the generation-1 Job")
    c.custom.patch_namespaced_custom_object("vlmops.dev", "v1alpha1", NS, "evalsuites", "edited",
                                            {"spec": {"thresholds": {"mmmu_val/mmmu_acc": 0.55}}})
    (g2,) = wait_for(lambda: [j for j in _children(c, "edited") if j["metadata"]["name"].endswith("-g2")],
                     timeout=WITHIN, what="the generation-2 Job")
    assert [j["metadata"]["name"] for j in _children(c, "edited")] == [g2["metadata"]["name"]]
    records = [r for r in emulator.records() if r.is_write]
    writes = [(r.method, r.path) for r in records]
    edited = next(i for i, r in enumerate(records) if r.user_agent == TEST_UA and r.method == "PATCH"
                  and r.path.endswith("/evalsuites/edited"))  # the user's spec change
    deleted = writes.index(("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{g1['metadata']['name']}"))
    creates = [i for i, w in enumerate(writes) if w == ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")]
    assert edited < deleted and not [i for i in creates if edited < i < deleted]  # never two generations at once
    assert [i for i in creates if i > deleted]
    c.finish(g2)
    wait_for(lambda: _phase(c, "edited") == "Succeeded", timeout=WITHIN, what="generation 2 Succeeded")
    assert c.get("EvalSuite", "edited")["status"]["observedGeneration"] == 2


def test_an_operator_killed_between_creating_a_child_and_patching_status_resumes_without_a_duplicate(
        api_client, emulator, fault_operator):
    c = Cluster(api_client, NS)
    # the first status patch hangs, then fails (a hung call that would write later would be a different fault)
    stuck = emulator.inject("PATCH", r"/evalsuites/killed/status$", delay=2.0, status=500)
    c.create(_eval_suite("killed"))
    wait_for(lambda: stuck.hits == 1, timeout=WITHIN, what="the hanging status patch")
    assert len(_children(c, "killed")) == 1 and not c.get("EvalSuite", "killed").get("status")
    fault_operator.kill()  # SIGKILL right after the create, before any status was written
    fault_operator.start()
    wait_for(lambda: _phase(c, "killed") == "Running", timeout=WITHIN, what="status written by the new process")
    (child,) = _children(c, "killed")  # found by its deterministic name, not created again
    c.finish(child)
    wait_for(lambda: _phase(c, "killed") == "Succeeded", timeout=WITHIN, what="Succeeded")
    assert len(_children(c, "killed")) == 1
