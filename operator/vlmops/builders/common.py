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
from ..api.common import Storage
from ..policy import Policy
MAX_CHILD_NAME = 47  # leaves room for "-master-0"/"-<index>-<rand>" pod and service names (<= 63)


@dataclass(frozen=True)
class BuildContext:
    """Operator-wide defaults (Helm values) the builders need; no I/O, no API access."""

    images: dict[str, str] = field(default_factory=lambda: {
        "data": f"ghcr.io/vlmops/vlmops-data:{__version__}",
        "train": f"ghcr.io/vlmops/vlmops-train:{__version__}",
        "eval": f"ghcr.io/vlmops/vlmops-eval:{__version__}",
        "evalVllm": f"ghcr.io/vlmops/vlmops-eval-vllm:{__version__}",
    })
    storage: Storage | None = None
    storage_prefix: str | None = None  # relative spec locations resolve against it (builders/uris.py)
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    policy: Policy = field(default_factory=Policy)  # what CR authors may ask for (checked before building)


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
    from kubeflow.training import ApiClient

    return ApiClient().sanitize_for_serialization(model)


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


def apply_pod_overrides(pod_spec: dict[str, Any], overrides: Any, ctx: BuildContext) -> dict[str, Any]:
    """Merge `spec.pod` (user-supplied dicts) into a serialized pod spec."""
    sa = (overrides.service_account_name if overrides else None) or ctx.service_account
    if sa:
        pod_spec["serviceAccountName"] = sa
    if not overrides:
        return pod_spec
    if overrides.node_selector:
        pod_spec["nodeSelector"] = {**pod_spec.get("nodeSelector", {}), **overrides.node_selector}
    if overrides.tolerations:
        pod_spec["tolerations"] = list(pod_spec.get("tolerations", [])) + list(overrides.tolerations)
    for c in pod_spec["containers"]:
        if overrides.resources:
            c["resources"] = _merge(c.get("resources", {}), overrides.resources)
        if overrides.env:
            names = {e["name"] for e in overrides.env}
            c["env"] = [e for e in c.get("env", []) if e["name"] not in names] + list(overrides.env)
    return pod_spec


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def job(cr: dict[str, Any], spec: Any, step: str, command: list[str], ctx: BuildContext, *, image_key: str = "data",
        completions: int | None = None, backoff_limit: int = 3, resources: dict[str, Any] | None = None,
        extra_env: list[k8s.V1EnvVar] | None = None) -> dict[str, Any]:
    """A batch/v1 Job; `completions` > 0 makes it an Indexed Job (one pod per shard)."""
    image = spec.container_image() or ctx.images[image_key]
    env = storage_env(spec.storage, ctx) + list(extra_env or [])
    meta = metadata(cr, step)
    pod_labels = dict(meta.labels)
    indexed = completions is not None
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
            pod_failure_policy=k8s.V1PodFailurePolicy(rules=[k8s.V1PodFailurePolicyRule(
                action="FailJob",
                on_exit_codes=k8s.V1PodFailurePolicyOnExitCodesRequirement(
                    container_name="main", operator="In", values=[EXIT_BAD_INPUT]),
            )]),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=pod_labels),
                spec=pod_spec([container("main", image, command, env, ctx, resources)], restart_policy="Never"),
            ),
        ),
    )
    out = to_dict(body)
    apply_pod_overrides(out["spec"]["template"]["spec"], spec.pod, ctx)
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
