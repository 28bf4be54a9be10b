"""Builders: every child of the LLaVA-OV-1.5 recipe is a valid Kubernetes object."""
from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from vlmops.builders import BuildContext, child_name
from vlmops.childstate import request_body
from vlmops.kinds import build
from vlmops.builders.common import MAX_CHILD_NAME
from vlmops.kinds import planned_status
from vlmops.manifests import with_defaults

K8S_VERSION = "1.33"


def _pipeline(recipe):
    objs = {(d["kind"], d["metadata"]["name"]): with_defaults(d) for d in recipe}
    for o in objs.values():
        o["metadata"]["uid"] = f"uid-{o['metadata']['name']}"
    ready = {k: {**o, "status": planned_status(o)} for k, o in objs.items()}
    return objs, ready


def _children(recipe, ctx=None):
    objs, ready = _pipeline(recipe)
    for key, obj in objs.items():
        plan = build(obj, ready, ctx)
        assert not plan.waiting_for, (key, plan.waiting_for)
        for step in plan.steps:
            yield obj, step


def test_every_child_of_the_recipe_validates_strictly(recipe):
    kinds = []
    for obj, step in _children(recipe):
        m = step.manifest
        kinds.append(m["kind"])
        if m["kind"] == "Job":
            kubernetes_validate.validate(m, K8S_VERSION, strict=True)
            assert request_body(m) == m  # the client's V1Job keeps every field (only the order may change)
        else:
            _validate_pytorchjob(m)
    assert kinds.count("PyTorchJob") == 3
    assert kinds.count("Job") == 2 + 4 * 3 + 1 + 3 + 1


def _check_model(data, type_name, path="$"):
    """Every key of `data` must be a field of the kubeflow-training 1.9.3 model `type_name`
    (recursing into kubeflow types; Kubernetes core types are checked by kubernetes-validate)."""
    import re

    from kubeflow.training import models

    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        for k, v in data.items():
            _check_model(v, m.group(1), f"{path}.{k}")
        return
    if not type_name.startswith("KubeflowOrg"):
        return
    cls = getattr(models, type_name)
    by_wire = {wire: attr for attr, wire in cls.attribute_map.items()}
    for key, value in data.items():
        assert key in by_wire, f"{path}.{key} is not a field of {type_name}"
        _check_model(value, cls.openapi_types[by_wire[key]], f"{path}.{key}")


def _validate_pytorchjob(m):
    _check_model(m, "KubeflowOrgV1PyTorchJob")
    assert m["apiVersion"] == "kubeflow.org/v1"
    replicas = m["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) <= {"Master", "Worker"} and "Master" in replicas
    for r in replicas.values():
        template = r["template"]
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                      "template": template}, K8S_VERSION, strict=True)
        (c,) = template["spec"]["containers"]
        assert c["name"] == "pytorch"
        assert c["command"][:1] == ["torchrun"] and "vlmops_jobs.train" in c["command"]


def test_a_stage_becomes_one_pytorchjob_with_master_and_workers(recipe):
    objs, ready = _pipeline(recipe)
    stage = objs[("VLMTrainingStage", "stage-1-5-mid-training")]
    (step,) = build(stage, ready).steps
    m = step.manifest
    assert m["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "vlm-training"
    assert m["spec"]["nprocPerNode"] == "8"
    assert m["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 15
    assert m["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    assert m["spec"]["runPolicy"]["suspend"] is True  # Kueue admits it
    c = m["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    cmd = c["command"]
    assert cmd[cmd.index("--nnodes") + 1] == "16" and cmd[cmd.index("--tensor") + 1] == "8"
    # initFrom a previous stage resolves to that stage's latest checkpoint
    assert cmd[cmd.index("--init-from") + 1] == "s3://vlm-ckpt/llava-ov-1.5-8b/stage-1/"
    assert cmd[cmd.index("--data") + 1] == "s3://vlm-data/llava-ov-1.5/mid-training/packed-8k/"
    assert m["metadata"]["ownerReferences"][0]["uid"] == "uid-stage-1-5-mid-training"


def test_credentials_only_by_secret_reference(recipe):
    from vlmops.api.common import Storage

    chart_storage = Storage(endpoint_url="https://s3.example.internal", secret_name="vlmops-s3")
    for obj, step in _children(recipe, BuildContext(storage=chart_storage)):
        text = repr(step.manifest)
        assert "AWS_SECRET_ACCESS_KEY" in text
        containers = (step.manifest["spec"].get("template") or
                      step.manifest["spec"].get("pytorchReplicaSpecs", {}).get("Master", {}).get("template"))
        for c in containers["spec"]["containers"]:
            for e in c.get("env", []):
                if e["name"].startswith("AWS_SECRET") or e["name"] == "AWS_ACCESS_KEY_ID":
                    assert "value" not in e and e["valueFrom"]["secretKeyRef"]["name"] == "vlmops-s3"


def test_indexed_jobs_and_bad_input_policy(recipe):
    objs, ready = _pipeline(recipe)
    plan = build(objs[("BalancedCorpus", "mid-training-85m")], ready)
    retrieve, balance = plan.steps
    spec = retrieve.manifest["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 256
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2]
    assert balance.manifest["spec"]["completionMode"] == "NonIndexed"
    cmd = retrieve.manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[:4] == ["python", "-m", "vlmops_jobs.balance", "retrieve"]


def test_child_names_are_deterministic_and_short():
    assert child_name("stage-1", "train", 3) == child_name("stage-1", "train", 3) == "stage-1-train-g3"
    long = "x" * 200
    n = child_name(long, "finalize", 12)
    assert len(n) <= MAX_CHILD_NAME and n.endswith("-finalize-g12")
    assert child_name("x" * 199 + "y", "finalize", 12) != n  # hashing keeps long names distinct
    assert child_name("9lives", "plan", 1)[0].isalpha()  # DNS-1035 starts with a letter


def test_waiting_for_inputs_names_them(recipe):
    objs, _ = _pipeline(recipe)
    plan = build(objs[("VLMTrainingStage", "stage-1-5-mid-training")], {})
    assert plan.steps == []
    assert any("PackedDataset/mid-training-8k" in w for w in plan.waiting_for)
    assert any("VLMTrainingStage/stage-1-alignment" in w for w in plan.waiting_for)


def test_not_ready_input_is_waiting(recipe):
    objs, ready = _pipeline(recipe)
    pds = dict(ready[("PackedDataset", "mid-training-8k")])
    pds["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "Running"}]}
    ready[("PackedDataset", "mid-training-8k")] = pds
    plan = build(objs[("VLMTrainingStage", "stage-1-5-mid-training")], ready)
    assert plan.waiting_for == ["PackedDataset/mid-training-8k is not Ready yet"]


def test_pod_overrides_and_defaults_merge(recipe):
    objs, ready = _pipeline(recipe)
    bc = copy.deepcopy(objs[("BalancedCorpus", "mid-training-85m")])
    bc["spec"]["pod"] = {"image": "registry.local/data:dev", "nodeSelector": {"pool": "cpu"},
                         "resources": {"requests": {"cpu": "4"}}, "env": [{"name": "X", "value": "1"}],
                         "tolerations": [{"key": "spot", "operator": "Exists"}]}
    ctx = BuildContext(service_account="vlmops-jobs")
    m = build(bc, ready, ctx).steps[0].manifest
    kubernetes_validate.validate(m, K8S_VERSION, strict=True)
    pod = m["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "vlmops-jobs" and pod["nodeSelector"] == {"pool": "cpu"}
    c = pod["containers"][0]
    assert c["image"] == "registry.local/data:dev" and c["resources"]["requests"]["cpu"] == "4"
    assert {"name": "X", "value": "1"} in c["env"]


@pytest.mark.parametrize("kind", ["BalancedCorpus", "PackedDataset", "VLMTrainingStage", "EvalSuite", "VLMRLStage"])
def test_the_same_generation_always_builds_the_same_manifests(recipe, kind):
    objs, ready = _pipeline(recipe)
    obj = next(o for k, o in objs.items() if k[0] == kind)
    a = [s.manifest for s in build(obj, ready).steps]
    b = [s.manifest for s in build(copy.deepcopy(obj), ready).steps]
    assert a == b
    obj2 = copy.deepcopy(obj)
    obj2["metadata"]["generation"] = 2
    names2 = {s.child_name for s in build(obj2, ready).steps}
    assert names2.isdisjoint({m["metadata"]["name"] for m in a})


def test_pytorchjob_check_catches_unknown_fields(recipe):
    objs, ready = _pipeline(recipe)
    m = copy.deepcopy(build(objs[("VLMTrainingStage", "stage-2-instruct")], ready).steps[0].manifest)
    m["spec"]["runPolicy"]["cleanupPolicy"] = "All"  # misspelt cleanPodPolicy
    with pytest.raises(AssertionError, match="runPolicy.cleanupPolicy"):
        _validate_pytorchjob(m)


def test_a_job_field_the_clients_model_refuses_is_named(recipe):
    """The kubernetes client validates a Job body into V1Job: the operator's create and `vlmops render`
    share `request_body`, which names the field the model refuses."""
    objs, ready = _pipeline(recipe)
    step = next(s for s in build(objs[("PackedDataset", "llava-558k-8k")], ready).steps if s.kind == "Job")
    m = copy.deepcopy(step.manifest)
    m["spec"]["template"]["spec"]["containers"][0]["resource"] = {"limits": {"cpu": "1"}}  # misspelt resources
    with pytest.raises(ValueError, match=r"V1Job refuses spec\.template\.spec\.containers\.0\.resource: Extra inputs"):
        request_body(m)


def test_eval_checks_the_stage_export_digest(recipe):
    objs, ready = _pipeline(recipe)
    stage = ready[("VLMTrainingStage", "stage-2-instruct")]
    stage["status"]["output"]["digest"] = "sha256:abc"
    ev = objs[("EvalSuite", "stage-2-eval")]
    cmd = build(ev, ready).steps[0].manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--model-uri") + 1] == stage["status"]["hf"]
    assert cmd[cmd.index("--model-digest") + 1] == "sha256:abc"
    assert cmd[cmd.index("--expected-version") + 1] == "0.7.3"
    ev2 = copy.deepcopy(ev)
    ev2["spec"]["model"] = {"huggingFace": "lmms-lab/LLaVA-OneVision-1.5-8B-Instruct"}
    cmd = build(ev2, ready).steps[0].manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--model-uri") + 1] == "lmms-lab/LLaVA-OneVision-1.5-8B-Instruct"  # HF cache lookup
    assert "--model-digest" not in cmd
