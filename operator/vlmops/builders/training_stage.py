"""VLMTrainingStage -> one Kubeflow PyTorchJob (Master + Workers) or Trainer v2 TrainJob, torchrun inside."""
from __future__ import annotations

import copy
from typing import Any

from kubernetes import client as k8s
from vlmops_contract.stage_checks import IMAGE_CELL

from ..api import packed_dataset, training_stage
from ..api.training_stage import VLMTrainingStageSpec
from .common import (BuildContext, Plan, Step, apply_pod_overrides, container, container_resources, flag_args,
                     pod_spec, queued_metadata, storage_env, to_dict)
from .inputs import Inputs, output_uri, resolve

METRICS_PORT = 9400
CONTAINER = "pytorch"  # the training operator finds the container by this name


def init_from_uri(spec: VLMTrainingStageSpec, inputs: Inputs, waiting: list[str]) -> tuple[str | None, str | None]:
    """(what --init-from names, the identity of its content when an upstream stage says so)."""
    ref = spec.init_from
    if ref is None:
        return None, None
    if ref.training_stage:
        prev = resolve(inputs, training_stage.KIND, ref.training_stage, waiting)
        if prev is None:
            return None, None
        status = prev.get("status") or {}
        uri = (status.get("checkpoint") or {}).get("latest") or prev["spec"]["checkpoint"]["uri"]
        return uri, (status.get("output") or {}).get("identity")
    if ref.checkpoint:
        return ref.checkpoint, None
    return f"hf://{ref.hugging_face}", None


def train_args(spec: VLMTrainingStageSpec, data_uri: str, tokenizer: str, init_from: str | None,
               init_from_identity: str | None = None) -> list[str]:
    o, p, m = spec.optimizer, spec.parallelism, spec.model
    return flag_args([
        ("--preset", m.preset),
        ("--model-json", None if m.preset else m.model_json()),
        ("--data", data_uri), ("--tokenizer", tokenizer),
        ("--trainable", spec.trainable),
        ("--lr", o.lr), ("--min-lr", o.min_lr), ("--weight-decay", o.weight_decay), ("--adam-beta2", o.adam_beta2),
        ("--warmup-fraction", o.warmup_fraction), ("--schedule", o.schedule), ("--clip-grad", o.clip_grad),
        ("--global-batch", spec.batch.global_), ("--micro-batch", spec.batch.micro),
        ("--train-iters", spec.train_iters), ("--seed", spec.seed),
        ("--tensor", p.tensor), ("--pipeline", p.pipeline), ("--context", p.context),
        ("--sequence-parallel", p.sequence_parallel), ("--distributed-optimizer", p.distributed_optimizer),
        ("--recompute", p.recompute if p.recompute != "none" else None),
        ("--checkpoint-uri", spec.checkpoint.uri), ("--checkpoint-interval", spec.checkpoint.interval_steps),
        ("--checkpoint-keep", spec.checkpoint.keep),
        ("--init-from", init_from), ("--init-from-identity", init_from_identity),
        ("--output", spec.output_uri()), ("--metrics-port", METRICS_PORT),
    ])


def dataset_problems(spec: VLMTrainingStageSpec, pds: dict[str, Any]) -> list[str]:
    """What the trainer would refuse about this dataset at start, found before any GPU is asked for."""

    shape = spec.model.shape()
    ds = pds.get("spec") or {}
    name, out = spec.data.packed_dataset, []
    seq = int(ds.get("sequenceLength") or 8192)
    if seq > shape.language.max_sequence_length:
        out.append(f"spec.data.packedDataset: {name} packs {seq}-token sequences; the model's max sequence length "
                   f"is {shape.language.max_sequence_length}")
    img = ds.get("image") or {}
    cell = int(img.get("patchSize", 14)) * int(img.get("mergeSize", 2))
    if cell != IMAGE_CELL:
        out.append(f"spec.data.packedDataset: {name} counts image tokens on {cell} px cells; the model's image-token "
                   f"cell is {IMAGE_CELL} px (its spec.image patchSize x mergeSize)")
    sequences = ((pds.get("status") or {}).get("stats") or {}).get("sequences")
    dp = spec.world_size // (spec.parallelism.tensor * spec.parallelism.pipeline * spec.parallelism.context)
    if sequences is not None and int(sequences) < dp:
        out.append(f"spec.data.packedDataset: {name} has {sequences} packed sequences, fewer than the "
                   f"{dp} data-parallel ranks")
    return out


def build(cr: dict[str, Any], spec: VLMTrainingStageSpec, inputs: Inputs, ctx: BuildContext) -> Plan:
    waiting: list[str] = []
    pds = resolve(inputs, packed_dataset.KIND, spec.data.packed_dataset, waiting)
    init_from, init_identity = init_from_uri(spec, inputs, waiting)
    if waiting:
        return Plan(waiting_for=waiting)
    assert pds is not None
    problems = dataset_problems(spec, pds)
    if problems:
        return Plan(invalid=problems)
    data_uri = output_uri(pds)
    tokenizer = pds["spec"]["tokenizer"]
    # torchrun reads each node's rank and the master's address from the PET_* variables that both the
    # Training Operator and Trainer v2 set; nodes and ranks per node are the stage's.
    command = ["torchrun", "--nnodes", str(spec.nodes), "--nproc-per-node", str(spec.gpus_per_node),
               "-m", "vlmops_jobs.train", *train_args(spec, data_uri, tokenizer, init_from, init_identity)]
    manifest = (trainjob if spec.runtime == "TrainJob" else pytorchjob)(cr, spec, command, ctx)
    return Plan(steps=[Step("train", manifest)], inputs={"data": data_uri, "tokenizer": tokenizer, "initFrom": init_from})


def _env(spec: VLMTrainingStageSpec, ctx: BuildContext) -> list[k8s.V1EnvVar]:
    return storage_env(spec.storage, ctx) + [k8s.V1EnvVar(name="OMP_NUM_THREADS", value="1")]


def _resources(spec: VLMTrainingStageSpec, ctx: BuildContext) -> dict[str, Any]:
    gpu = {spec.gpu_resource: str(spec.gpus_per_node)}
    return container_resources(ctx, "train", {"limits": gpu, "requests": gpu}, spec.pod)


def pytorchjob(cr: dict[str, Any], spec: VLMTrainingStageSpec, command: list[str], ctx: BuildContext
               ) -> dict[str, Any]:
    """A kubeflow.org/v1 PyTorchJob: Master + (nodes - 1) Workers, one pod template.

    Written as the plain object (its few envelope fields), not with kubeflow-training's client models:
    importing those costs ~6 s, which `vlmops render` cannot afford; tests check every rendered
    PyTorchJob against the pinned kubeflow-training 1.9.3 models and the pod templates with
    kubernetes-validate."""
    meta, sched = queued_metadata(cr, spec, "train", ctx)
    pod_labels = dict(meta.labels)
    c = container(CONTAINER, spec.container_image() or ctx.images["train"], command, _env(spec, ctx), ctx,
                  resources=_resources(spec, ctx))
    c.ports = [k8s.V1ContainerPort(name="metrics", container_port=METRICS_PORT)]
    pod = pod_spec([c], scheduler_name=sched.scheduler_name, priority_class_name=sched.priority_class_name)
    template = to_dict(k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=pod_labels), spec=pod))
    apply_pod_overrides(template, spec.pod, ctx, shm=True)

    def replica(n: int) -> dict[str, Any]:
        return {"replicas": n, "restartPolicy": "OnFailure", "template": copy.deepcopy(template)}

    replicas = {"Master": replica(1)}
    if spec.nodes > 1:
        replicas["Worker"] = replica(spec.nodes - 1)
    # Gang scheduling (Volcano / scheduler-plugins) reads schedulingPolicy; its `queue` is Volcano's
    # queue, so it is set only for Volcano (Kueue reads the queue-name label instead).
    gang = {"minAvailable": spec.nodes, "priorityClass": sched.priority_class_name,
            "queue": sched.queue_name if sched.scheduler_name == "volcano" else None}
    run_policy = {"backoffLimit": 3, "cleanPodPolicy": "Running",
                  "schedulingPolicy": {k: v for k, v in gang.items() if v is not None},
                  # Kueue admits suspended jobs; after creation only Kueue touches `suspend`.
                  "suspend": True if sched.queue_name else None}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": to_dict(meta),
            "spec": {"nprocPerNode": str(spec.gpus_per_node), "pytorchReplicaSpecs": replicas,
                     "runPolicy": {k: v for k, v in run_policy.items() if v is not None}}}


TRAINJOB_NODE = "node"  # the replicated job and container of a Trainer v2 torch runtime
PATCH_MANAGER = "vlmops.dev/operator"


def trainjob(cr: dict[str, Any], spec: VLMTrainingStageSpec, command: list[str], ctx: BuildContext
             ) -> dict[str, Any]:
    """A trainer.kubeflow.org/v1alpha1 TrainJob on the chart's ClusterTrainingRuntime (which holds the
    parts a TrainJob cannot patch: metrics port, pod priority, scheduler, host network).

    The container's image, command, env and resources are the trainer's; our labels (how results are
    found), the pod overlay and /dev/shm go in as a runtime patch of the `node` pods. Checked in tests
    against the pinned kubeflow-trainer-api 2.3.0 models."""
    meta, sched = queued_metadata(cr, spec, "train", ctx)
    pod_labels = dict(meta.labels)
    # the same container and overlay as a PyTorchJob's pods, then cut to what a TrainJob carries: the
    # trainer's fields and a runtime patch
    c = container(TRAINJOB_NODE, spec.container_image() or ctx.images["train"], command, _env(spec, ctx), ctx,
                  resources=_resources(spec, ctx))
    template = to_dict(k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=pod_labels),
                                             spec=k8s.V1PodSpec(containers=[c])))
    apply_pod_overrides(template, spec.pod, ctx, shm=True)
    pod, node = template["spec"], template["spec"]["containers"][0]
    container_patch = {"name": TRAINJOB_NODE, "volumeMounts": node.get("volumeMounts")}
    pod_patch = {k: pod.get(k) for k in ("affinity", "nodeSelector", "securityContext", "serviceAccountName",
                                          "tolerations", "volumes")}
    pod_patch["containers"] = [{k: v for k, v in container_patch.items() if v}]
    patch = {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [{
        "name": TRAINJOB_NODE, "template": {"spec": {"template": {
            "metadata": template["metadata"], "spec": {k: v for k, v in pod_patch.items() if v}}}}}]}}}}
    trainer = {"image": node["image"], "command": node["command"], "env": node["env"],
               "numNodes": spec.nodes, "numProcPerNode": spec.gpus_per_node, "resourcesPerNode": node["resources"]}
    body: dict[str, Any] = {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                           "name": ctx.train_job_runtime},
                            "trainer": trainer, "runtimePatches": [patch]}
    if sched.queue_name:
        body["suspend"] = True  # Kueue admits it (its TrainJob integration reads the queue-name label)
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": to_dict(meta),
            "spec": body}


def trainjob_pod_patch(tj: dict[str, Any]) -> dict[str, Any]:
    """The `node` pod-template patch (metadata + spec) of a TrainJob `trainjob` built."""
    (patch,) = tj["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return node["template"]["spec"]["template"]
