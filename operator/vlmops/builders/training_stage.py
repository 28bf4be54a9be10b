"""VLMTrainingStage -> one Kubeflow PyTorchJob (Master + Workers, torchrun inside)."""
from __future__ import annotations

from typing import Any

from kubeflow.training import models as kf
from kubernetes import client as k8s
from vlmops_contract.stage_checks import IMAGE_CELL

from ..api import packed_dataset, training_stage
from ..api.training_stage import VLMTrainingStageSpec
from .common import (BuildContext, Plan, Step, apply_pod_overrides, container, flag_args, metadata, pod_spec,
                     storage_env, to_dict)
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
    command = ["torchrun", "--nnodes", str(spec.nodes), "--nproc-per-node", str(spec.gpus_per_node),
               "-m", "vlmops_jobs.train", *train_args(spec, data_uri, tokenizer, init_from, init_identity)]
    meta = metadata(cr, "train")
    sched = spec.scheduling
    if sched and sched.queue_name:
        meta.labels["kueue.x-k8s.io/queue-name"] = sched.queue_name
    gpu = {spec.gpu_resource: str(spec.gpus_per_node)}
    env = storage_env(spec.storage, ctx) + [k8s.V1EnvVar(name="OMP_NUM_THREADS", value="1")]

    def template() -> dict[str, Any]:
        c = container(CONTAINER, spec.container_image() or ctx.images["train"], command, env, ctx,
                      resources={"limits": gpu, "requests": gpu})
        c.ports = [k8s.V1ContainerPort(name="metrics", container_port=METRICS_PORT)]
        c.volume_mounts = [k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")]
        pod = pod_spec(
            [c],
            scheduler_name=sched.scheduler_name if sched else None,
            priority_class_name=sched.priority_class_name if sched else None,
            volumes=[k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory"))],
        )
        t = to_dict(k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=dict(meta.labels)), spec=pod))
        apply_pod_overrides(t["spec"], spec.pod, ctx)
        return t

    replicas = {"Master": kf.KubeflowOrgV1ReplicaSpec(replicas=1, restart_policy="OnFailure", template=template())}
    if spec.nodes > 1:
        replicas["Worker"] = kf.KubeflowOrgV1ReplicaSpec(
            replicas=spec.nodes - 1, restart_policy="OnFailure", template=template())
    body = kf.KubeflowOrgV1PyTorchJob(
        api_version="kubeflow.org/v1",
        kind="PyTorchJob",
        metadata=meta,
        spec=kf.KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(spec.gpus_per_node),
            pytorch_replica_specs=replicas,
            run_policy=kf.KubeflowOrgV1RunPolicy(
                backoff_limit=3,
                clean_pod_policy="Running",
                # Kueue admits suspended jobs; after creation only Kueue touches `suspend`.
                suspend=True if sched and sched.queue_name else None,
                scheduling_policy=kf.KubeflowOrgV1SchedulingPolicy(
                    min_available=spec.nodes, queue=sched.queue_name if sched else None,
                    priority_class=sched.priority_class_name if sched else None),
            ),
        ),
    )
    return Plan(steps=[Step("train", to_dict(body))],
                inputs={"data": data_uri, "tokenizer": tokenizer, "initFrom": init_from})
