"""VLMTrainingStage (`vts`): one stage of the recipe, run as a Kubeflow PyTorchJob."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .kind import AGE, PHASE, KindAPI, column
from .common import CommonSpec, CommonStatus, Model, Name, OutputSpec
from .rules import exactly_one, rule


class VisionModel(Model):
    """RICE-ViT at native resolution: no fixed image size (the packer's smart-resize decides it)."""

    num_layers: int = Field(..., ge=1)
    hidden_size: int = Field(..., ge=1)
    num_attention_heads: int = Field(..., ge=1)
    ffn_hidden_size: int | None = Field(None, ge=1, description="default 4 x hiddenSize")
    patch_size: int = Field(14, ge=1)


class LanguageModel(Model):
    """Qwen3: GQA, q/k RMSNorm, SwiGLU, 1D RoPE."""

    num_layers: int = Field(..., ge=1)
    hidden_size: int = Field(..., ge=1)
    num_attention_heads: int = Field(..., ge=1)
    num_query_groups: int | None = Field(None, ge=1, description="default numAttentionHeads (no GQA)")
    head_dim: int | None = Field(None, ge=1, description="default hiddenSize / numAttentionHeads")
    ffn_hidden_size: int = Field(..., ge=1)
    vocab_size: int = Field(..., ge=1)
    rope_base: float = Field(1_000_000.0, gt=0)
    tie_embeddings: bool = False
    max_sequence_length: int = Field(16384, ge=1)


class Projector(Model):
    """The patch merger: LayerNorm, mergeSize x mergeSize patches concatenated, 2-layer GELU MLP."""

    type: Literal["mlp2x_gelu"] = "mlp2x_gelu"
    merge_size: int = Field(2, ge=1)


# The presets' shapes live in the contract package (vlmops_contract.model_shapes, dependency-free,
# shared with the trainer); the API resolves them to run the trainer's own checks (stage_checks).
PRESET_NAMES = ("tiny", "llava-ov-1.5-4b", "llava-ov-1.5-8b")


_MODEL_RULES = (
    rule("has(self.preset) != (has(self.vision) && has(self.language))",
         "set either preset or both vision and language",
         lambda m: (m.preset is not None) != (m.vision is not None and m.language is not None)),
    rule("!has(self.preset) || (!has(self.vision) && !has(self.language))",
         "preset cannot be combined with explicit vision/language blocks",
         lambda m: m.preset is None or (m.vision is None and m.language is None)),
)


class ModelSpec(Model):
    RULES = _MODEL_RULES

    preset: Literal["tiny", "llava-ov-1.5-4b", "llava-ov-1.5-8b"] | None = None
    vision: VisionModel | None = None
    language: LanguageModel | None = None
    projector: Projector | None = None

    def model_json(self) -> str:
        """The explicit blocks as the trainer's `--model-json` (API wire format)."""
        import json

        return json.dumps({k: v.wire() for k, v in self.explicit_blocks().items()}, sort_keys=True,
                          separators=(",", ":"))

    def shape(self):
        """The trainer's Preset for this spec (named preset or explicit blocks, as the job reads them)."""
        from vlmops_contract.model_shapes import PRESETS, preset_from_model_json

        return PRESETS[self.preset] if self.preset else preset_from_model_json(self.model_json())

    def explicit_blocks(self) -> dict[str, Model]:
        return {"vision": self.vision, "language": self.language, "projector": self.projector or Projector()}


_INIT_RULES = (exactly_one("trainingStage", "checkpoint", "huggingFace"),)


class ModelRef(Model):
    """Where weights come from: another stage's final checkpoint, a URI, or an HF repo."""

    RULES = _INIT_RULES

    training_stage: Name | None = None
    checkpoint: str | None = Field(None, min_length=1)
    hugging_face: str | None = Field(None, min_length=1, description=(
        "Weights in the LLaVA-OneVision-1.5 release format (config.json + safetensors): a storage URI or path, "
        "or a Hugging Face repo id resolved through the HF cache. A training stage imports them (TP-aware) "
        "when it starts; an EvalSuite evaluates them."))


class DataRef(Model):
    packed_dataset: Name


class Optimizer(Model):
    lr: float = Field(1e-5, gt=0)
    min_lr: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta2: float = Field(0.95, gt=0, lt=1)
    warmup_fraction: float = Field(0.002, ge=0, lt=1)
    schedule: Literal["cosine", "constant", "linear"] = "cosine"
    clip_grad: float = Field(1.0, ge=0)


class Batch(Model):
    global_: int = Field(8, ge=1, alias="global")
    micro: int = Field(1, ge=1)


class Parallelism(Model):
    tensor: int = Field(1, ge=1)
    pipeline: int = Field(1, ge=1)
    context: int = Field(1, ge=1)
    sequence_parallel: bool = False
    distributed_optimizer: bool = True
    recompute: Literal["none", "selective", "full"] = "none"


class CheckpointSpec(Model):
    uri: str = Field(..., min_length=1)
    interval_steps: int = Field(1000, ge=1)
    keep: int = Field(2, ge=1)


def _stage_cel_rules():
    from vlmops_contract.stage_checks import cel_rules

    return tuple(rule(cel, msg, lambda s: True) for cel, msg in cel_rules())


# A TrainJob's pods come from the ClusterTrainingRuntime; a TrainJob can patch only some pod fields
# (Trainer v2.3 runtimePatches): the rest is refused at admission rather than silently dropped.
_TRAINJOB_RULES = (
    rule("self.runtime != 'TrainJob' || !has(self.scheduling) || (!has(self.scheduling.priorityClassName) "
         "&& !has(self.scheduling.schedulerName))",
         "scheduling: with runtime TrainJob the pod priority and scheduler come from the ClusterTrainingRuntime "
         "(chart values training.trainJob.*), or use runtime PyTorchJob to set them per stage",
         lambda s: s.runtime != "TrainJob" or s.scheduling is None
         or (s.scheduling.priority_class_name is None and s.scheduling.scheduler_name is None)),
    rule("self.runtime != 'TrainJob' || !has(self.pod) || !has(self.pod.hostNetwork)",
         "pod.hostNetwork: with runtime TrainJob the ClusterTrainingRuntime decides (chart value "
         "training.trainJob.hostNetwork)",
         lambda s: s.runtime != "TrainJob" or s.pod is None or s.pod.host_network is None),
)

# CEL text and messages come from the trainer's own checks (vlmops_contract.stage_checks): the
# pydantic side runs those checks themselves (`_rules` below), so admission == the job's start.
_STAGE_RULES = _stage_cel_rules() + _TRAINJOB_RULES


class VLMTrainingStageSpec(CommonSpec):
    RULES = _STAGE_RULES

    model: ModelSpec
    init_from: ModelRef | None = None
    data: DataRef
    trainable: list[Literal["vision", "projector", "language"]] = Field(
        default_factory=lambda: ["vision", "projector", "language"], min_length=1)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    batch: Batch = Field(default_factory=Batch)
    train_iters: int = Field(..., ge=1)
    seed: int = 42
    parallelism: Parallelism = Field(default_factory=Parallelism)
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(8, ge=1)
    gpu_resource: str = "nvidia.com/gpu"
    runtime: Literal["PyTorchJob", "TrainJob"] = Field("PyTorchJob", description=(
        "The child that runs torchrun: a Kubeflow Training Operator v1 PyTorchJob, or a Kubeflow Trainer v2 "
        "TrainJob on the chart's ClusterTrainingRuntime (training.trainJob.runtimeName)."))
    checkpoint: CheckpointSpec
    output: OutputSpec | None = Field(None, description="Progress, HF export, manifest (default <checkpoint.uri>/output).")

    @model_validator(mode="after")
    def _rules(self):
        from vlmops_contract.stage_checks import StageFacts, problems

        p, o = self.parallelism, self.optimizer
        bad = problems(StageFacts(
            world=self.world_size, tensor=p.tensor, pipeline=p.pipeline, context=p.context,
            sequence_parallel=p.sequence_parallel, global_batch=self.batch.global_, micro=self.batch.micro,
            lr=o.lr, min_lr=o.min_lr,
            warmup_fraction=o.warmup_fraction, preset=self.model.shape()), detail=False)
        if bad:
            raise ValueError("; ".join(bad))
        return self

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def output_uri(self) -> str:
        return self.output.uri if self.output else self.checkpoint.uri.rstrip("/") + "/output"


class TrainProgress(Model):
    step: int | None = None
    total_steps: int | None = None
    tokens_per_second: float | None = None
    samples_per_second: float | None = None
    mfu: float | None = None
    loss: float | None = None
    dropped_samples: int | None = Field(None, description="Sub-samples left out because they exceed the model's "
                                        "max sequence length (counted, never silent).")


class CheckpointStatus(Model):
    latest: str | None = None
    step: int | None = None


class VLMTrainingStageStatus(CommonStatus):
    job: str | None = None
    progress: TrainProgress | None = None
    checkpoint: CheckpointStatus | None = None
    hf: str | None = Field(None, description="URI of the Hugging Face export of the final weights.")
    restarts: int | None = None


KIND = KindAPI("VLMTrainingStage", "vlmtrainingstages", "vts", VLMTrainingStageSpec, VLMTrainingStageStatus,
               "Succeeded", [
    PHASE, column("Step", ".status.progress.step", "integer"),
    column("Tokens/s", ".status.progress.tokensPerSecond", "number"),
    column("Nodes", ".spec.nodes", "integer"), column("Queue", ".spec.scheduling.queueName"), AGE])
