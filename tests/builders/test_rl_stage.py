"""VLMRLStage's children (the release example): a select Indexed Job, a merge Job, a train Job, all
valid Kubernetes objects; what they wait for; an EvalSuite on an RL stage's export; the kind's
status row, gauges and report section."""
from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest

from vlmops import metrics
from vlmops.kinds import KINDS, build, planned_status
from vlmops.manifests import with_defaults

K8S_VERSION = "1.33"


@pytest.fixture
def objs(recipe):
    out = {(d["kind"], d["metadata"]["name"]): with_defaults(d) for d in recipe}
    for o in out.values():
        o["metadata"]["uid"] = f"uid-{o['metadata']['name']}"
    return out


def _ready(objs):
    return {k: {**o, "status": planned_status(o)} for k, o in objs.items()}


def _container(step):
    return step.manifest["spec"]["template"]["spec"]["containers"][0]


def test_the_release_example_builds_three_valid_children_in_order(objs):
    plan = build(objs[("VLMRLStage", "rl-grpo")], _ready(objs))
    assert [s.name for s in plan.steps] == ["select", "merge", "train"]
    for s in plan.steps:
        kubernetes_validate.validate(s.manifest, K8S_VERSION, strict=True)
        assert s.manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "vlm-training"
        assert s.manifest["spec"]["suspend"] is True
    select, merge, train = plan.steps
    assert select.manifest["spec"]["completionMode"] == "Indexed" and select.manifest["spec"]["completions"] == 16
    assert _container(select)["resources"]["limits"] == {"nvidia.com/gpu": "8"}  # vLLM over the pod's GPUs
    assert "resources" not in _container(merge) or "limits" not in _container(merge)["resources"]
    cmd = _container(train)["command"]
    assert cmd[:4] == ["torchrun", "--standalone", "--nproc-per-node", "8"] and cmd[4:7] == ["-m", "vlmops_jobs.rl", "train"]
    phases = json.loads(cmd[cmd.index("--phases") + 1])
    assert [p["name"] for p in phases] == ["answer-only", "chain-of-thought"]
    assert [p["template"] for p in phases] == ["answerOnly", "chainOfThought"]
    # every pod of select and train gets a memory-backed /dev/shm of the CR's size
    for s in (select, train):
        vols = {v["name"]: v for v in s.manifest["spec"]["template"]["spec"]["volumes"]}
        assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    # the policy is the Stage-2 export, checked against that stage's manifest digest when known
    policy = _container(select)["command"][_container(select)["command"].index("--policy") + 1]
    assert policy == planned_status(objs[("VLMTrainingStage", "stage-2-instruct")])["hf"]
    assert plan.inputs == {"policy": policy, "prompts": "s3://vlm-data/rl/prompts.parquet"}


def test_hf_rollouts_sample_on_one_gpu_per_select_pod_and_train_with_plain_python_on_one(objs):
    rl = copy.deepcopy(objs[("VLMRLStage", "rl-grpo")])
    rl["spec"].update(rollout="hf", gpus=4)
    select = build(rl, _ready(objs)).steps[0]
    assert _container(select)["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    rl["spec"].update(gpus=1)
    train = build(rl, _ready(objs)).steps[2]
    assert _container(train)["command"][:4] == ["python", "-m", "vlmops_jobs.rl", "train"]


def test_it_waits_for_the_stage_and_for_its_export(objs):
    rl = objs[("VLMRLStage", "rl-grpo")]
    assert build(rl, {}).waiting_for == ["VLMTrainingStage/stage-2-instruct not found"]
    stage = objs[("VLMTrainingStage", "stage-2-instruct")]
    done = {**stage, "status": {**planned_status(stage), "hf": None}}
    assert build(rl, {("VLMTrainingStage", "stage-2-instruct"): done}).waiting_for == [
        "VLMTrainingStage/stage-2-instruct has no Hugging Face export in status.hf"]


def test_an_eval_and_a_later_rl_stage_read_the_rl_export_with_its_manifest_digest(objs):
    rl = objs[("VLMRLStage", "rl-grpo")]
    status = {**planned_status(rl), "output": {"uri": "s3://o", "digest": "sha256:abc"}}
    ready = {("VLMRLStage", "rl-grpo"): {**rl, "status": status}}
    ev = build(objs[("EvalSuite", "rl-eval")], ready).steps[0]
    cmd = _container(ev)["command"]
    assert cmd[cmd.index("--model-uri") + 1] == "s3://vlm-ckpt/llava-ov-1.5-8b/rl/output/hf"
    assert cmd[cmd.index("--model-digest") + 1] == "sha256:abc"
    nxt = copy.deepcopy(rl)
    nxt["metadata"]["name"] = "rl-more"
    nxt["spec"]["initFrom"] = {"rlStage": "rl-grpo"}
    cmd = _container(build(nxt, ready).steps[0])["command"]
    assert cmd[cmd.index("--policy") + 1] == "s3://vlm-ckpt/llava-ov-1.5-8b/rl/output/hf"


def test_status_row_gauges_and_report_section():
    kind = KINDS["VLMRLStage"]
    status = {"progress": {"step": 12, "totalSteps": 20, "phase": "answer-only", "rewardMean": 0.625,
                           "kl": 0.01, "tokensPerSecond": 900.0},
              "selection": {"selected": 7, "prompts": 16, "passAt1Mean": 0.6, "passAtNMean": 0.9,
                            "verdicts": {"kept": 7, "alwaysCorrect": 9}, "policy": {"uri": "s3://s2/hf"}},
              "curve": [{"step": 1, "reward": 0.25, "kl": 0.0, "length": 3.0},
                        {"step": 12, "reward": 0.625, "kl": 0.01, "length": 2.0}]}
    assert kind.status_detail(status) == "selected 7/16, answer-only 12/20, reward 0.625"
    kind.export_metrics("ns", "rl-x", status)
    assert metrics.RL_REWARD.labels("ns", "rl-x")._value.get() == 0.625
    assert metrics.RL_SELECTED.labels("ns", "rl-x")._value.get() == 7
    metrics.remove_series("ns", "rl-x", kind.gauges)
    assert not [s for m in metrics.RL_REWARD.collect() for s in m.samples if s.labels.get("name") == "rl-x"]
    page = kind.report_html({"status": status})
    assert page.count("<svg") == 3 and "mean reward: 0.25 .. 0.625" in page
    assert "7 of 16 prompts kept" in page and "s3://s2/hf" in page and "<td>alwaysCorrect</td><td>9</td>" in page
    assert kind.report_html({"status": {}}) == ""
