"""The real operator against the emulated API server: a stage run as a Kubeflow Trainer v2 TrainJob ends
with the same status and results as the same stage run as a PyTorchJob (the tests play both
controllers, pipeline_driver)."""
from __future__ import annotations

import copy

import pytest

from operator_harness import wait_for
from pipeline_driver import Cluster, example_docs

pytestmark = pytest.mark.usefixtures("operator")


def _run_stage(api_client, runtime: str) -> tuple[dict, dict]:
    ns = f"rt-{runtime.lower()}"
    c = Cluster(api_client, ns)
    docs = [d for d in example_docs(ns) if d["metadata"]["name"] in ("llava-558k-8k", "stage-1-alignment")]
    stage = next(d for d in docs if d["kind"] == "VLMTrainingStage")
    stage["spec"].pop("initFrom")
    stage["spec"]["runtime"] = runtime
    stage["spec"]["scheduling"] = {"queueName": "vlm-training"}
    for d in docs:
        c.create(d)
    done: set[str] = set()
    while not c.is_done("VLMTrainingStage", "stage-1-alignment"):
        new = wait_for(lambda: [ch for ch in c.children() if ch["metadata"]["name"] not in done]
                       or c.is_done("VLMTrainingStage", "stage-1-alignment"), what=f"the next child ({runtime})")
        if new is True:
            break
        for ch in new:
            if ch["metadata"]["labels"]["vlmops.dev/step"] == "train":
                child = copy.deepcopy(ch)
            c.finish(ch)
            done.add(ch["metadata"]["name"])
    return child, c.get("VLMTrainingStage", "stage-1-alignment")["status"]


def _comparable(status: dict) -> dict:
    s = copy.deepcopy(status)
    for key in ("startTime", "completionTime"):
        s.pop(key)
    s["message"] = s.get("message", "").replace("TrainJob", "PyTorchJob")
    for c in s["conditions"]:
        c.pop("lastTransitionTime")
        c["message"] = c.get("message", "").replace("TrainJob", "PyTorchJob")
    for c in s["children"]:
        c.pop("apiVersion"), c.pop("kind")
    return s


def test_a_stage_ends_the_same_as_a_pytorchjob_or_a_trainjob(api_client):
    pj, pj_status = _run_stage(api_client, "PyTorchJob")
    tj, tj_status = _run_stage(api_client, "TrainJob")
    assert pj["kind"] == "PyTorchJob" and tj["kind"] == "TrainJob"
    assert tj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "vlm-training" and tj["spec"]["suspend"] is True
    assert tj_status["phase"] == "Succeeded" and tj_status["progress"]["step"] == 1000
    assert tj_status["children"][0]["kind"] == "TrainJob"
    assert _comparable(tj_status) == _comparable(pj_status)
