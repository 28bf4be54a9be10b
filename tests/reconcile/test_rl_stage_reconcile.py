"""A VLMRLStage reconciled against the in-memory KubeAPI: it waits for its training stage, then
creates select -> merge -> train one after the other; each step's result lands in status (the
selection after merge; progress, curve, HF export and output after train) and the CR Succeeds.
A failed merge (no prompt kept) fails the CR with the job's error line."""
from __future__ import annotations

import copy

from fake_api import FakeKube

from vlmops import reconciler
from vlmops.builders import BuildContext
from vlmops.kinds import planned_status
from vlmops.manifests import with_defaults
from pipeline_driver import example_docs

CTX = BuildContext()


def _docs():
    docs = {d["metadata"]["name"]: d for d in example_docs("ns")}
    stage = with_defaults(docs["stage-2-instruct"])
    stage["status"] = {**planned_status(stage), "output": {"uri": "s3://o", "digest": "sha256:d", "identity": "sha256:i"}}
    return [stage, docs["rl-grpo"]]


def _run(kube):
    return reconciler.reconcile(kube, "VLMRLStage", "ns", "rl-grpo", CTX)


SELECTION = {"selection": {"uri": "s3://rl/selection", "prompts": 400000, "selected": 67000,
                           "passAt1Mean": 0.61, "passAtNMean": 0.83, "verdicts": {"kept": 67000},
                           "policy": {"uri": "s3://vlm-ckpt/stage-2/output/hf", "identity": "sha256:i"}}}
TRAIN = {"progress": {"step": 2094, "totalSteps": 2094, "phase": "chain-of-thought", "rewardMean": 0.71, "kl": 0.02},
         "checkpoint": {"latest": "s3://ck/chain-of-thought/final", "step": 2094},
         "output": {"uri": "s3://vlm-ckpt/llava-ov-1.5-8b/rl/output", "digest": "sha256:m"},
         "hf": "s3://vlm-ckpt/llava-ov-1.5-8b/rl/output/hf", "curve": [{"step": 1, "reward": 0.4}, {"step": 2094, "reward": 0.71}]}


def test_the_steps_run_in_order_and_their_results_fill_status():
    stage, rl = _docs()
    pending = copy.deepcopy(stage)
    pending["status"] = {}
    kube = FakeKube([pending, rl])
    _run(kube)
    st = kube.crs[("VLMRLStage", "rl-grpo")]["status"]
    assert st["phase"] == "Pending" and "VLMTrainingStage/stage-2-instruct" in st["conditions"][0]["message"]
    kube.crs[("VLMTrainingStage", "stage-2-instruct")]["status"] = stage["status"]
    assert _run(kube).created == ["rl-grpo-select-g1"]
    kube.succeed("rl-grpo-select-g1", {"select": {"shard": 0, "prompts": 25000}})
    assert _run(kube).created == ["rl-grpo-merge-g1"]
    kube.succeed("rl-grpo-merge-g1", SELECTION)
    assert _run(kube).created == ["rl-grpo-train-g1"]
    st = kube.crs[("VLMRLStage", "rl-grpo")]["status"]
    assert st["phase"] == "Running" and st["selection"]["selected"] == 67000 and "select" not in st
    kube.succeed("rl-grpo-train-g1", TRAIN)
    _run(kube)
    st = kube.crs[("VLMRLStage", "rl-grpo")]["status"]
    assert st["phase"] == "Succeeded" and st["hf"] == TRAIN["hf"] and st["progress"]["rewardMean"] == 0.71
    assert st["curve"] == TRAIN["curve"] and st["selection"]["policy"]["identity"] == "sha256:i"
    kube.writes.clear()
    _run(kube)
    assert kube.writes == []  # settled: nothing to write


def test_a_merge_that_keeps_nothing_fails_the_stage_with_its_error_line():
    stage, rl = _docs()
    kube = FakeKube([stage, rl])
    _run(kube)
    kube.succeed("rl-grpo-select-g1", {"select": {"shard": 0}})
    _run(kube)
    child = kube.children["rl-grpo-merge-g1"]
    child["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}], "failed": 1}
    kube.pods.append({"metadata": {"name": "rl-grpo-merge-g1-0", "labels": dict(child["metadata"]["labels"]),
                                   "annotations": {}},
                      "status": {"containerStatuses": [{"name": "main", "state": {"terminated": {
                          "exitCode": 2, "message": "error: selection: no prompt was kept (alwaysCorrect 12)"}}}]}})
    _run(kube)
    st = kube.crs[("VLMRLStage", "rl-grpo")]["status"]
    assert st["phase"] == "Failed" and "error: selection: no prompt was kept" in st["message"]
    assert "rl-grpo-train-g1" not in kube.children
