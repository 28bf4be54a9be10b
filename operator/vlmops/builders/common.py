"""Shared pieces of every child manifest: names, labels, owner references, env, pod templates.

Builders are pure: they take a validated CR (and its inputs' statuses) and return plain dicts.
Typed kubernetes-client models build the objects; `to_dict` serializes them the way the API
server expects (camelCase, no nulls) using kubeflow-training's ApiClient, which handles both
kubernetes and kubeflow models.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from vlmops_contract.api import API_VERSION
from vlmops_contract.labels import (LABEL_GENERATION, LABEL_KIND, LABEL_NAME, LABEL_STEP, MANAGED_BY,
                                    MANAGED_BY_LABEL, PARENT_ANNOTATION, PART_OF_LABEL, label_value)
from vlmops_contract.result import EXIT_BAD_INPUT
from vlmops_contract.storage_env import CREDENTIAL_ENV, ENDPOINT_ENV, REGION_ENV

from .. import __version__
from ..api.common import PodOverrides, Scheduling, Storage
from ..policy import Policy
MAX_CHILD_NAME = 47  # leaves room for "-master-0"/"-<index>-<rand>" pod and service names (<= 63)


# Default requests per job image (chart values jobs.resources): every pod asks for CPU and memory,
# so schedulers and quotas (Kueue) see what it needs; a CR's spec.pod.resources is merged over them.
DEFAULT_RESOURCES: dict[str, dict[str, Any]] = {
    "data": {"requests": {"cpu": "2", "memory": "8Gi"}},
    "dataGpu": {"requests": {"cpu": "4", "memory": "32Gi"}},
    "train": {"requests": {"cpu": "16", "memory": "128Gi"}},
    "eval": {"requests": {"cpu": "4", "memory": "32Gi"}},
    "evalVllm": {"requests": {"cpu": "8", "memory": "64Gi"}},
}
TRAINJOB_RUNTIME = "vlmops-torch"  # the ClusterTrainingRuntime the chart ships (training.trainJob.runtimeName)


@dataclass(frozen=True)
class BuildContext:
    """Operator-wide defaults (Helm values) the builders need; no I/O, no API access."""

    images: dict[str, str] = field(default_factory=lambda: {
        "data": f"ghcr.io/vlmops/vlmops-data:{__version__}",
        "dataGpu": f"ghcr.io/vlmops/vlmops-data-gpu:{__version__}",  # images/data with FAISS=gpu
        "train": f"ghcr.io/vlmops/vlmops-train:{__version__}",
        "eval": f"ghcr.io/vlmops/vlmops-eval:{__version__}",
        "evalVllm": f"ghcr.io/vlmops/vlmops-eval-vllm:{__version__}",
    })
    storage: Storage | None = None
    storage_prefix: str | None = None  # relative spec locations resolve against it (builders/uris.py)
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    policy: Policy = field(default_factory=Policy)  # what CR authors may ask for (checked before building)
    resources: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    scheduling: Scheduling | None = None  # defaults for every CR's spec.scheduling (per field)
    # a succeeded child is deleted this long after its result is in the CR's status (None: kept; the
    # chart's default is a day)
    ttl_seconds_after_finished: int | None = None
    train_job_runtime: str = TRAINJOB_RUNTIME


@dataclass
class Step:
    """One child the CR needs, in order: it starts only after the previous step succeeded."""

    name: str
    manifest: dict[str, Any]
    extra: list[dict[str, Any]] = field(default_factory=list)  # e.g. a ConfigMap created first

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def child_name(self) -> str:
        return self.manifest["metadata"]["name"]


@dataclass
class Plan:
    """What a CR needs now: either the inputs it waits for, or its ordered child steps."""

    steps: list[Step] = field(default_factory=list)
    waiting_for: list[str] = field(default_factory=list)  # "Kind/name: reason"
    inputs: dict[str, Any] = field(default_factory=dict)  # resolved input URIs, for status/lineage
    # spec problems only visible against an input (e.g. a dataset the model cannot read): Stalled,
    # "spec.field: why", before any child is created
    invalid: list[str] = field(default_factory=list)


def to_dict(model: Any) -> dict[str, Any]:
    """A kubernetes-client model as the API server expects it (camelCase, no nulls)."""
    return k8s.ApiClient().sanitize_for_serialization(model)


QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def scheduling(spec: Any, ctx: BuildContext) -> Scheduling:
    """The CR's spec.scheduling over the chart's defaults, field by field."""
    own = spec.scheduling or Scheduling()
    default = ctx.scheduling or Scheduling()
    return Scheduling(queue_name=own.queue_name or default.queue_name,
                      priority_class_name=own.priority_class_name or default.priority_class_name,
                      scheduler_name=own.scheduler_name or default.scheduler_name)


def queue_labels(sched: Scheduling) -> dict[str, str]:
    """What Kueue's Job / PyTorchJob / TrainJob integrations read: the LocalQueue label on the workload."""
    return {QUEUE_LABEL: sched.queue_name} if sched.queue_name else {}


def queued_metadata(cr: dict[str, Any], spec: Any, step: str, ctx: BuildContext
                    ) -> tuple[k8s.V1ObjectMeta, Scheduling]:
    """A child's metadata with the queue label (its pods carry the same labels), and its scheduling."""
    meta = metadata(cr, step)
    sched = scheduling(spec, ctx)
    meta.labels.update(queue_labels(sched))
    return meta, sched


def container_resources(ctx: BuildContext, image_key: str, own: dict[str, Any] | None, pod: PodOverrides | None
              ) -> dict[str, Any]:
    """Requests/limits of a job container: chart defaults, then the kind's own (GPUs), then spec.pod."""
    out = _merge(ctx.resources.get(image_key) or {}, own or {})
    if pod and pod.resources:
        out = _merge(out, pod.resources)
    return out


def child_name(cr_name: str, step: str, generation: int) -> str:
    """Deterministic, DNS-1035, <= MAX_CHILD_NAME: the same CR generation always maps to the same
    name, so create-if-absent is idempotent across operator restarts."""
    suffix = f"-{step}-g{generation}"
    base = re.sub(r"[^a-z0-9-]", "-", cr_name.lower())
    if not base[:1].isalpha():
        base = "v" + base
    if len(base) + len(suffix) > MAX_CHILD_NAME:
        digest = hashlib.sha256(cr_name.encode()).hexdigest()[:6]
        base = base[: MAX_CHILD_NAME - len(suffix) - 7].rstrip("-") + "-" + digest
    return base + suffix


def labels(cr: dict[str, Any], step: str) -> dict[str, str]:
    meta = cr["metadata"]
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        PART_OF_LABEL: "vlmops",
        LABEL_KIND: cr["kind"],
        LABEL_NAME: label_value(meta["name"]),
        LABEL_STEP: step,
        LABEL_GENERATION: str(meta.get("generation", 1)),
    }


def owner_reference(cr: dict[str, Any]) -> k8s.V1OwnerReference | None:
    uid = cr["metadata"].get("uid")
    if not uid:  # rendering offline (vlmops render / run): no owner yet
        return None
    return k8s.V1OwnerReference(api_version=API_VERSION, kind=cr["kind"], name=cr["metadata"]["name"], uid=uid,
                                controller=True, block_owner_deletion=True)


def metadata(cr: dict[str, Any], step: str) -> k8s.V1ObjectMeta:
    meta = cr["metadata"]
    owner = owner_reference(cr)
    return k8s.V1ObjectMeta(
        name=child_name(meta["name"], step, meta.get("generation", 1)),
        namespace=meta.get("namespace"),
        labels=labels(cr, step),
        owner_references=[owner] if owner else None,
        annotations={PARENT_ANNOTATION: f"{cr['kind']}/{meta['name']}"},
    )


def storage_env(spec_storage: Storage | None, ctx: BuildContext) -> list[k8s.V1EnvVar]:
    """Endpoint/region as plain env, credentials only by reference to a Secret (never inline)."""
    st = spec_storage or ctx.storage or Storage()
    default = ctx.storage or Storage()
    endpoint = st.endpoint_url or default.endpoint_url
    region = st.region or default.region
    secret = st.secret_name or default.secret_name
    env = []
    if endpoint:
        env.append(k8s.V1EnvVar(name=ENDPOINT_ENV, value=endpoint))
    if region:
        env.append(k8s.V1EnvVar(name=REGION_ENV, value=region))
    if secret:
        for key in CREDENTIAL_ENV:
            env.append(k8s.V1EnvVar(name=key, value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key))))
    return env


def container(name: str, image: str, command: list[str], env: list[k8s.V1EnvVar], ctx: BuildContext,
              resources: dict[str, Any] | None = None) -> k8s.V1Container:
    return k8s.V1Container(
        name=name,
        image=image,
        image_pull_policy=ctx.image_pull_policy,
        command=command,
        # the image reference, recorded by the job in its manifest (environment.image)
        env=[*(env or []), k8s.V1EnvVar(name="VLMOPS_IMAGE", value=image)],
        resources=k8s.V1ResourceRequirements(**resources) if resources else None,
        # The job's result JSON; FallbackToLogsOnError keeps the tail of the log on crashes.
        termination_message_policy="FallbackToLogsOnError",
        security_context=k8s.V1SecurityContext(allow_privilege_escalation=False,
                                               capabilities=k8s.V1Capabilities(drop=["ALL"])),
    )


def pod_spec(containers: list[k8s.V1Container], **kw: Any) -> k8s.V1PodSpec:
    """A job pod that meets Pod Security "restricted": non-root (the job images run as UID 1000),
    RuntimeDefault seccomp, no service-account token (jobs never call the Kubernetes API)."""
    return k8s.V1PodSpec(
        containers=containers,
        automount_service_account_token=False,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        **kw,
    )


SHM_VOLUME = "dshm"


def apply_pod_overrides(template: dict[str, Any], overrides: PodOverrides | None, ctx: BuildContext,
                        shm: bool = False) -> dict[str, Any]:
    """Merge the CR's pod overlay (`spec.pod`, user-supplied dicts) into a serialized pod template
    (metadata + spec). Every container gets the env and volume mounts; resources are set by the
    builders (`resources`). `shm`: the pod always gets a memory-backed /dev/shm (training)."""
    spec, meta = template["spec"], template.setdefault("metadata", {})
    sa = (overrides.service_account_name if overrides else None) or ctx.service_account
    if sa:
        spec["serviceAccountName"] = sa
    o = overrides or PodOverrides()
    if shm or o.shm_size:
        empty_dir: dict[str, Any] = {"medium": "Memory"}
        if o.shm_size:
            empty_dir["sizeLimit"] = o.shm_size
        spec["volumes"] = [v for v in spec.get("volumes") or [] if v["name"] != SHM_VOLUME] + [
            {"emptyDir": empty_dir, "name": SHM_VOLUME}]
        for c in spec["containers"]:
            c["volumeMounts"] = [m for m in c.get("volumeMounts") or [] if m["name"] != SHM_VOLUME] + [
                {"mountPath": "/dev/shm", "name": SHM_VOLUME}]
    if overrides is None:
        return template
    if o.labels:
        meta["labels"] = {**o.labels, **(meta.get("labels") or {})}  # ours win (reserved keys refused anyway)
    if o.annotations:
        meta["annotations"] = {**(meta.get("annotations") or {}), **o.annotations}
    if o.node_selector:
        spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **o.node_selector}
    if o.tolerations:
        spec["tolerations"] = list(spec.get("tolerations", [])) + list(o.tolerations)
    if o.affinity:
        spec["affinity"] = o.affinity
    if o.host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"  # keeps cluster DNS (the master's Service name)
    if o.security_context:
        spec["securityContext"] = _merge(spec.get("securityContext") or {}, o.security_context)
    if o.volumes:
        spec["volumes"] = list(spec.get("volumes") or []) + list(o.volumes)
    for c in spec["containers"]:
        if o.env:
            names = {e["name"] for e in o.env}
            c["env"] = [e for e in c.get("env", []) if e["name"] not in names] + list(o.env)
        if o.volume_mounts:
            c["volumeMounts"] = list(c.get("volumeMounts") or []) + list(o.volume_mounts)
    return template


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def job(cr: dict[str, Any], spec: Any, step: str, command: list[str], ctx: BuildContext, *, image_key: str = "data",
        completions: int | None = None, backoff_limit: int = 3, resources: dict[str, Any] | None = None,
        extra_env: list[k8s.V1EnvVar] | None = None, shm: bool = False) -> dict[str, Any]:
    """A batch/v1 Job; `completions` > 0 makes it an Indexed Job (one pod per shard). Queued (Kueue):
    created suspended with the queue label, Kueue unsuspends it once admitted. `shm`: a memory-backed
    /dev/shm (data loaders, NCCL)."""
    image = spec.container_image() or ctx.images[image_key]
    env = storage_env(spec.storage, ctx) + list(extra_env or [])
    meta, sched = queued_metadata(cr, spec, step, ctx)
    pod_labels = dict(meta.labels)
    indexed = completions is not None
    main = container("main", image, command, env, ctx, container_resources(ctx, image_key, resources, spec.pod))
    body = k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=meta,
        spec=k8s.V1JobSpec(
            completion_mode="Indexed" if indexed else "NonIndexed",
            completions=completions if indexed else 1,
            parallelism=completions if indexed else 1,
            backoff_limit=None if indexed else backoff_limit,
            backoff_limit_per_index=backoff_limit if indexed else None,
            max_failed_indexes=0 if indexed else None,
            suspend=True if sched.queue_name else None,
            pod_failure_policy=k8s.V1PodFailurePolicy(rules=[k8s.V1PodFailurePolicyRule(
                action="FailJob",
                on_exit_codes=k8s.V1PodFailurePolicyOnExitCodesRequirement(
                    container_name="main", operator="In", values=[EXIT_BAD_INPUT]),
            )]),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=pod_labels),
                spec=pod_spec([main], restart_policy="Never", priority_class_name=sched.priority_class_name,
                              scheduler_name=sched.scheduler_name),
            ),
        ),
    )
    out = to_dict(body)
    apply_pod_overrides(out["spec"]["template"], spec.pod, ctx, shm=shm)
    return out


def py(module: str, *args: Any) -> list[str]:
    """`python -m vlmops_jobs.<module> ...` with every argument stringified."""
    return ["python", "-m", f"vlmops_jobs.{module}", *[str(a) for a in args]]


def flag_args(pairs: list[tuple[str, Any]]) -> list[str]:
    """['--flag', 'value', ...] skipping None; booleans become bare flags when True."""
    out: list[str] = []
    for flag, value in pairs:
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, ",".join(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out
