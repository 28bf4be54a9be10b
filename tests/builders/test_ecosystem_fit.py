"""What platform teams' clusters need from every child: the Kueue queue label, CPU/memory requests,
the pod-template overlay (`spec.pod`) on every pod, and the training child as a PyTorchJob or a
Kubeflow Trainer v2 TrainJob, each checked against its pinned schema (kubernetes-validate for built-in
kinds, kubeflow-training 1.9.3 and kubeflow-trainer-api 2.3.0 models for theirs)."""
from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

from test_child_manifests import K8S_VERSION, _pipeline, _validate_pytorchjob
from vlmops.api.common import Scheduling
from vlmops.builders import BuildContext
from vlmops.builders.eval_suite import model_arg
from vlmops.builders.training_stage import trainjob_pod_patch
from vlmops.kinds import build
from vlmops.policy import POD_OVERRIDES, Policy

REPO = Path(__file__).resolve().parents[2]
QUEUE = "kueue.x-k8s.io/queue-name"
OVERLAY = {
    "labels": {"team": "vision"},
    "annotations": {"example.com/owner": "ml-infra"},
    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "vlm-models", "readOnly": True}}],
    "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}]}}},
    "securityContext": {"fsGroup": 1000},
    "shmSize": "32Gi",
    "tolerations": [{"key": "gpu", "operator": "Exists"}],
    "nodeSelector": {"pool": "gpu"},
}


def _pods(m):
    """(where, pod template) of every pod a child runs."""
    if m["kind"] == "Job":
        yield "job", m["spec"]["template"]
    elif m["kind"] == "PyTorchJob":
        for role, r in m["spec"]["pytorchReplicaSpecs"].items():
            yield role, r["template"]
    else:
        yield "node", _trainjob_pod(m)


def _trainjob_pod(m):
    """The `node` pod a TrainJob asks for: the runtime patch with the trainer's container fields."""
    pod = copy.deepcopy(trainjob_pod_patch(m))
    t = m["spec"]["trainer"]
    (c,) = pod["spec"].pop("containers")
    pod["spec"]["containers"] = [{**c, "image": t["image"], "command": t["command"], "env": t["env"],
                                  "resources": t["resourcesPerNode"]}]
    return pod


def _validate_trainjob(m):
    """Round trip through the pinned Trainer v2 models: an unknown or misplaced field is dropped (and the
    comparison fails), a wrong type raises; the pod part is a core PodTemplate."""
    assert TrainerV1alpha1TrainJob.from_dict(m).to_dict() == m
    assert m["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                       "name": "vlmops-torch"}
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                  "template": _trainjob_pod(m)}, K8S_VERSION, strict=True)


def _children(recipe, ctx=None, runtime=None):
    objs, ready = _pipeline(recipe)
    for obj in objs.values():
        if runtime and obj["kind"] == "VLMTrainingStage":
            obj["spec"]["runtime"] = runtime
            obj["spec"]["scheduling"].pop("priorityClassName", None)  # the runtime's, with a TrainJob
        for step in build(obj, ready, ctx or BuildContext()).steps:
            yield obj, step.manifest


def _validate(m):
    if m["kind"] == "Job":
        kubernetes_validate.validate(m, K8S_VERSION, strict=True)
    elif m["kind"] == "PyTorchJob":
        _validate_pytorchjob(m)
    else:
        _validate_trainjob(m)


@pytest.mark.parametrize("runtime", ["PyTorchJob", "TrainJob"])
def test_every_child_of_the_recipe_validates_with_either_runtime(recipe, runtime):
    kinds = [m["kind"] for _, m in _children(recipe, runtime=runtime)]
    for _, m in _children(recipe, runtime=runtime):
        _validate(m)
    assert kinds.count(runtime) == 3 and kinds.count("Job") == 2 + 4 * 3 + 1 + 3 + 1


def test_the_trainjob_check_catches_unknown_fields(recipe):
    _, m = next((o, m) for o, m in _children(recipe, runtime="TrainJob") if m["kind"] == "TrainJob")
    m["spec"]["trainer"]["numProcsPerNode"] = 8  # misspelt numProcPerNode
    with pytest.raises(AssertionError):
        _validate_trainjob(m)


@pytest.mark.parametrize("runtime", ["PyTorchJob", "TrainJob"])
def test_every_pod_of_the_recipe_has_its_queue_requests_and_overlay(recipe, runtime):
    for obj, m in _children(recipe, runtime=runtime):
        spec, where = obj["spec"], f"{obj['kind']}/{obj['metadata']['name']} {m['metadata']['name']}"
        queue = spec["scheduling"]["queueName"]
        assert m["metadata"]["labels"][QUEUE] == queue, where  # what Kueue's integrations read
        assert (m["spec"].get("suspend") or m["spec"].get("runPolicy", {}).get("suspend")) is True, where
        for role, pod in _pods(m):
            assert pod["metadata"]["labels"][QUEUE] == queue, (where, role)
            for c in pod["spec"]["containers"]:
                requests = c["resources"]["requests"]
                assert {"cpu", "memory"} <= set(requests), (where, role)
            mounts = {v["mountPath"]: v["name"] for c in pod["spec"]["containers"] for v in c.get("volumeMounts") or []}
            volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
            for mount in (spec.get("pod") or {}).get("volumeMounts") or []:
                assert mounts.get(mount["mountPath"]) == mount["name"] and mount["name"] in volumes, (where, role)
            if shm := (spec.get("pod") or {}).get("shmSize"):
                assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": shm}


def test_quickstart_pods_get_the_chart_default_queue_and_requests():
    docs = [d for f in sorted((REPO / "examples" / "quickstart").glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    ctx = BuildContext(scheduling=Scheduling(queue_name="team-a"), storage_prefix="s3://b/p")
    from vlmops.builders.uris import resolve_uris

    for d in docs:
        d["spec"] = resolve_uris(d["spec"], ctx.storage_prefix)
    for obj, m in _children(docs, ctx):
        for role, pod in _pods(m):
            assert pod["metadata"]["labels"][QUEUE] == "team-a"
            assert all({"cpu", "memory"} <= set(c["resources"]["requests"]) for c in pod["spec"]["containers"])


@pytest.mark.parametrize("runtime", ["PyTorchJob", "TrainJob"])
def test_the_whole_overlay_reaches_every_pod_of_every_kind(recipe, runtime):
    overlay = dict(OVERLAY, env=[{"name": "HF_HOME", "value": "/models/hf"}])
    if runtime == "PyTorchJob":
        overlay["hostNetwork"] = True
    for obj in recipe:
        obj["spec"]["pod"] = copy.deepcopy(overlay)
    for obj, m in _children(recipe, runtime=runtime):
        _validate(m)
        for role, pod in _pods(m):
            where = (obj["metadata"]["name"], role)
            meta, ps = pod["metadata"], pod["spec"]
            assert meta["labels"]["team"] == "vision" and meta["labels"]["vlmops.dev/step"], where
            assert meta["annotations"]["example.com/owner"] == "ml-infra", where
            assert ps["affinity"] == OVERLAY["affinity"] and ps["nodeSelector"] == {"pool": "gpu"}, where
            assert {"key": "gpu", "operator": "Exists"} in ps["tolerations"], where
            assert ps["securityContext"]["fsGroup"] == 1000, where
            if m["kind"] != "TrainJob":  # a TrainJob's pods keep the runtime's restricted defaults
                assert ps["securityContext"]["runAsNonRoot"] is True, where
            volumes = {v["name"]: v for v in ps["volumes"]}
            assert len(volumes) == len(ps["volumes"]), where  # the overlay merged once, names unique
            assert volumes["models"] == OVERLAY["volumes"][0], where
            assert volumes["dshm"]["emptyDir"]["sizeLimit"] == "32Gi", where
            if m["kind"] == "PyTorchJob":
                assert ps["hostNetwork"] is True and ps["dnsPolicy"] == "ClusterFirstWithHostNet"
            assert len(ps["tolerations"]) == len({str(t) for t in ps["tolerations"]}), where
            for c in ps["containers"]:
                assert len({m["mountPath"] for m in c["volumeMounts"]}) == len(c["volumeMounts"]), where
                assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"], where
                assert {"name": "HF_HOME", "value": "/models/hf"} in c["env"], where


def test_volcano_gets_its_queue_only_with_the_volcano_scheduler(recipe):
    objs, ready = _pipeline(recipe)
    stage = objs[("VLMTrainingStage", "stage-1-alignment")]
    policy = build(stage, ready).steps[0].manifest["spec"]["runPolicy"]["schedulingPolicy"]
    assert "queue" not in policy and policy["priorityClass"] == "training-high"  # Kueue: the label only
    stage["spec"]["scheduling"] = {"queueName": "research", "schedulerName": "volcano"}
    m = build(stage, ready).steps[0].manifest
    assert m["spec"]["runPolicy"]["schedulingPolicy"]["queue"] == "research"
    assert m["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["schedulerName"] == "volcano"


def test_chart_defaults_and_the_crs_own_settings_merge_field_by_field(recipe):
    objs, ready = _pipeline(recipe)
    ev = objs[("EvalSuite", "stage-2-eval")]
    ev["spec"]["scheduling"] = {"priorityClassName": "eval-low"}
    ev["spec"]["pod"] = {"resources": {"requests": {"memory": "100Gi"}}}
    ctx = BuildContext(scheduling=Scheduling(queue_name="default-q", priority_class_name="p"))
    m = build(ev, ready, ctx).steps[0].manifest
    pod = m["spec"]["template"]
    assert m["metadata"]["labels"][QUEUE] == "default-q" and pod["spec"]["priorityClassName"] == "eval-low"
    res = pod["spec"]["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "4", "memory": "100Gi"} and res["limits"] == {"nvidia.com/gpu": "8"}
    unqueued = build(ev, ready, BuildContext()).steps[0].manifest
    assert QUEUE not in unqueued["metadata"]["labels"] and "suspend" not in unqueued["spec"]


@pytest.mark.parametrize("field", POD_OVERRIDES)
def test_each_overlay_field_is_gated_by_the_tenancy_policy(recipe, field):
    spec = copy.deepcopy(next(o for o in recipe if o["kind"] == "PackedDataset")["spec"])
    spec["pod"] = {field: {"serviceAccountName": "x", "env": [{"name": "A", "value": "1"}], "hostNetwork": True,
                           "shmSize": "1Gi"}.get(field, OVERLAY.get(field))}
    closed = Policy(allowed_overrides=frozenset())
    assert f"spec.pod.{field}: not allowed on this cluster (chart value policy.allowOverrides)" in \
        closed.violations(spec, [])
    assert not [v for v in Policy(allowed_overrides=frozenset({field})).violations(spec, []) if field in v]


def test_host_path_volumes_need_their_own_permission(recipe):
    spec = {"pod": {"volumes": [{"name": "ok", "emptyDir": {}}, {"name": "node", "hostPath": {"path": "/"}}]}}
    volumes_only = Policy(allowed_overrides=frozenset({"volumes"}))
    assert volumes_only.violations(spec, []) == [
        "spec.pod.volumes[1].hostPath: node directories are not allowed on this cluster "
        "(chart value policy.allowOverrides: hostPath)"]
    assert Policy(allowed_overrides=frozenset({"volumes", "hostPath"})).violations(spec, []) == []
    scheduling = {"scheduling": {"queueName": "other-team"}}
    assert Policy(allowed_overrides=frozenset()).violations(scheduling, []) == [
        "spec.scheduling: not allowed on this cluster (chart value policy.allowOverrides)"]


def test_model_args_scalars_reach_lmms_eval_as_the_same_types(recipe):
    from lmms_eval.utils import simple_parse_args_string

    objs, ready = _pipeline(recipe)
    ev = objs[("EvalSuite", "stage-2-eval")]
    args = {"max_pixels": 3240000, "use_cache": True, "temperature": 0.5, "attn_implementation": "sdpa"}
    ev["spec"]["lmmsEval"]["modelArgs"] = args
    cmd = build(ev, ready).steps[0].manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    rendered = cmd[cmd.index("--model-args") + 1]
    assert rendered == "attn_implementation=sdpa,max_pixels=3240000,temperature=0.5,use_cache=True"
    assert simple_parse_args_string(rendered) == args
    assert model_arg(False) == "False"


def test_gpu_retrieval_asks_for_a_gpu_on_the_gpu_image_and_the_job_must_use_it(recipe):
    objs, ready = _pipeline(recipe)
    bc = objs[("BalancedCorpus", "mid-training-85m")]
    bc["spec"]["retrieval"].update(gpus=1, gpuFloat16=True)
    steps = {s.name: s.manifest for s in build(bc, ready).steps}
    pod = steps["retrieve"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == BuildContext().images["dataGpu"] and c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert c["command"][c["command"].index("--device") + 1] == "gpu" and "--gpu-float16" in c["command"]
    kubernetes_validate.validate(steps["retrieve"], K8S_VERSION, strict=True)
    balance = steps["balance"]["spec"]["template"]["spec"]["containers"][0]
    assert "limits" not in balance["resources"] and balance["image"] == BuildContext().images["data"]
    cpu = {s.name: s.manifest for s in build(objs[("BalancedCorpus", "mid-training-85m")] | {"spec": {
        **bc["spec"], "retrieval": {**bc["spec"]["retrieval"], "gpus": 0}}}, ready).steps}
    assert "--device" not in cpu["retrieve"]["spec"]["template"]["spec"]["containers"][0]["command"]
    from vlmops.kinds import KINDS, parse_spec
    sizes = KINDS["BalancedCorpus"].sizes(parse_spec(bc))
    assert ("spec.retrieval.gpus x spec.shards", 256, "gpus") in sizes


def test_a_path_on_the_crs_own_volume_is_not_a_storage_location(recipe):
    pds = copy.deepcopy(next(o for o in recipe if o["metadata"]["name"] == "mid-training-8k")["spec"])
    policy = Policy(storage_prefixes=("s3://vlm-data/",))
    assert not [v for v in policy.violations(pds, []) if "tokenizer" in v]  # /models/... on the models volume
    pds["tokenizer"] = "/etc/passwd"
    assert any(v.startswith("spec.tokenizer:") for v in policy.violations(pds, []))
    pds["tokenizer"] = "/models/../etc/passwd"
    assert any(v.startswith("spec.tokenizer:") for v in policy.violations(pds, []))
