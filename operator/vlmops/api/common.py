"""Types every kind shares: storage, pod overrides, references, conditions and the status core."""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .rules import Rule, cel_validations, check_rules


def _rules_into_schema(schema: dict[str, Any], cls: type["Model"]) -> None:
    if cls.RULES:
        schema["x-kubernetes-validations"] = cel_validations(cls.RULES)


class Model(BaseModel):
    """Base of all API types: camelCase on the wire, unknown fields rejected (like a CRD).

    `RULES` (api/rules.py) are a type's cross-field rules: CEL in the generated CRD schema, the same
    check in pydantic (`vlmops validate`, the local runner, the operator).
    """

    RULES: ClassVar[tuple[Rule, ...]] = ()
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              json_schema_extra=_rules_into_schema)

    @model_validator(mode="after")
    def _check_rules(self):
        check_rules(self, type(self).RULES)
        return self

    def wire(self) -> dict[str, Any]:
        """The object as it appears in a CR (camelCase, unset optional fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# Free-form Kubernetes sub-objects (resources, tolerations, env) keep their own schema;
# the CRD marks them x-kubernetes-preserve-unknown-fields and kubernetes-validate checks
# them in the rendered children.
KubeObject = Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]


class Storage(Model):
    endpoint_url: str | None = Field(None, alias="endpointURL", description="S3 endpoint (omit for AWS).")
    region: str | None = None
    secret_name: str | None = Field(
        None, description="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, mounted as env."
    )


# Scalar values of free-form maps (lmms-eval modelArgs): YAML authors write numbers and booleans.
# The CRD keeps the value untyped and one rule (CEL + pydantic, api/eval_suite.py) admits only scalars,
# so admission and `vlmops validate` say the same thing.
Scalar = Annotated[Any, Field(json_schema_extra={"x-vlmops-scalar": True})]

# label/annotation keys the operator sets itself: a CR may not override them
RESERVED_LABEL_PREFIXES = ("vlmops.dev/", "app.kubernetes.io/", "kueue.x-k8s.io/", "batch.kubernetes.io/",
                           "training.kubeflow.org/", "trainer.kubeflow.org/", "jobset.sigs.k8s.io/")


class PodOverrides(Model):
    """The pod template overlay: merged into every pod the CR's children run (each field gated by the
    chart's tenancy policy, `policy.allowOverrides`)."""

    RULES = (
        ("!has(self.labels) || self.labels.all(k, !['vlmops.dev/', 'app.kubernetes.io/', 'kueue.x-k8s.io/', "
         "'batch.kubernetes.io/', 'training.kubeflow.org/', 'trainer.kubeflow.org/', 'jobset.sigs.k8s.io/']"
         ".exists(p, k.startsWith(p)))",
         "pod.labels: keys under vlmops.dev/, app.kubernetes.io/, kueue.x-k8s.io/ and the job controllers' "
         "prefixes are set by the operator",
         lambda s: not any(k.startswith(RESERVED_LABEL_PREFIXES) for k in (s.labels or {}))),
        ("!has(self.volumeMounts) || self.volumeMounts.all(m, m.mountPath != '/dev/shm')",
         "pod.volumeMounts: /dev/shm is sized by pod.shmSize",
         lambda s: all(m.get("mountPath") != "/dev/shm" for m in s.volume_mounts or [])),
    )

    image: str | None = Field(None, description="Container image override (the only one for PackedDataset, "
                              "whose spec.image is the image-token block).")
    resources: KubeObject | None = Field(None, description="Merged over the chart's default requests "
                                         "(jobs.resources) and the kind's own (GPUs).")
    node_selector: dict[str, str] | None = None
    tolerations: list[KubeObject] | None = None
    service_account_name: str | None = None
    env: list[KubeObject] | None = None
    labels: dict[str, str] | None = Field(None, description="Extra pod labels.")
    annotations: dict[str, str] | None = Field(None, description="Extra pod annotations.")
    volumes: list[KubeObject] | None = Field(None, description="Extra pod volumes (core/v1 Volume).")
    volume_mounts: list[KubeObject] | None = Field(None, description="Mounted into the job container "
                                                   "(core/v1 VolumeMount), e.g. a tokenizer or model directory.")
    affinity: KubeObject | None = Field(None, description="core/v1 Affinity (e.g. topology for multi-node NCCL).")
    host_network: bool | None = Field(None, description="Run on the node's network (RDMA / multi-node NCCL).")
    security_context: KubeObject | None = Field(None, description="Merged over the pod's restricted default "
                                                "securityContext (core/v1 PodSecurityContext).")
    shm_size: str | None = Field(None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$",
                                 description="Size limit of the memory-backed /dev/shm (e.g. 64Gi); data loaders "
                                 "and NCCL need more than the container runtime's 64 MB.")


class Scheduling(Model):
    queue_name: str | None = Field(None, description="Kueue LocalQueue: the kueue.x-k8s.io/queue-name label on "
                                   "every child (Kueue admits the suspended child when quota allows).")
    priority_class_name: str | None = Field(None, description="PriorityClass of every pod (Kueue also orders "
                                            "workloads by it).")
    scheduler_name: str | None = Field(None, description="Pod scheduler, e.g. volcano (then queueName is also "
                                       "the Volcano queue of a PyTorchJob).")


class OutputSpec(Model):
    uri: str = Field(..., min_length=1, description="fsspec URI prefix (s3://bucket/path, file:///path).")


Name = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]


class Condition(Model):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class ChildRef(Model):
    api_version: str
    kind: str
    name: str


class OutputStatus(Model):
    uri: str | None = None
    manifest: str | None = None
    digest: str | None = None
    identity: str | None = Field(None, description="digest of the output's content, inputs (by identity), parameters, "
                                 "code and environment: equal wherever the output is stored")
    image: str | None = Field(None, description="the image (imageID, with its digest) the pod that committed the "
                              "output ran; also recorded in the manifest's environment.imageID")


Phase = Literal["Pending", "Running", "Succeeded", "Ready", "Failed"]


class CommonStatus(Model):
    model_config = ConfigDict(extra="allow")

    phase: Phase | None = None
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
    start_time: str | None = None
    completion_time: str | None = None
    children: list[ChildRef] | None = None
    output: OutputStatus | None = None
    message: str | None = None


class Progress(Model):
    shards_completed: int | None = None
    shards_total: int | None = None


class CommonSpec(Model):
    storage: Storage | None = None
    image: str | None = Field(None, description="Override the operator's default job image.")
    pod: PodOverrides | None = None
    scheduling: Scheduling | None = Field(None, description="Queue, priority and scheduler of every child "
                                          "(default: the chart's jobs.scheduling).")

    def container_image(self) -> str | None:
        if isinstance(self.image, str):
            return self.image
        return self.pod.image if self.pod else None
