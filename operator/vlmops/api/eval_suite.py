"""EvalSuite (`evs`): lmms-eval against a checkpoint, thresholds as a gate."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .kind import AGE, PHASE, KindAPI, column
from .common import CommonSpec, CommonStatus, Model, OutputSpec, Scalar
from .rules import rule
from .rl_stage import PolicyRef

DEFAULT_MODEL = {"hf": "llava_onevision1_5", "vllm": "vllm"}  # the lmms-eval model per backend
VLLM_RESERVED = ("model", "tensor_parallel_size", "data_parallel_size")  # the job sets them (same as the job's list)


class LmmsEval(Model):
    RULES = (
        ("self.modelArgs.all(k, type(self.modelArgs[k]) in [string, int, uint, double, bool])",
         "lmmsEval.modelArgs: values are strings, numbers or booleans",
         lambda s: all(isinstance(v, (str, int, float, bool)) for v in s.model_args.values())),
    )
    version: str = Field("0.7.3", pattern=r"^\d+\.\d+\.\d+$", description="Pinned lmms-eval version.")
    model: str | None = Field(None, description="lmms-eval model name (default: llava_onevision1_5 with backend hf, "
                              "vllm with backend vllm).")
    model_args: dict[str, Scalar] = Field(default_factory=dict, description=(
        "lmms-eval --model_args (strings, numbers, booleans; rendered key=value as lmms-eval parses them)."))
    tasks: list[str] = Field(..., min_length=1)
    batch_size: int = Field(1, ge=1)
    limit: int | None = Field(None, ge=1)
    include_path: str | None = Field(None, description="URI of a directory of custom task YAMLs.")


class EvalParallelism(Model):
    workers: int = Field(1, ge=1, le=64, description=(
        "Data-parallel workers in the eval pod: each evaluates its share of every task's documents, rank 0 "
        "merges them (backend hf: torchrun processes, one GPU each; backend vllm: vLLM data-parallel replicas)."))


_EVAL_RULES = (
    rule("self.backend != 'hf' || self.parallelism.workers == 1 || self.gpus == 0 "
         "|| self.gpus == self.parallelism.workers",
         "parallelism.workers: with backend hf each worker takes one GPU, so gpus must be 0, equal workers, "
         "or workers 1 (one process over all GPUs)",
         lambda s: s.backend != "hf" or s.parallelism.workers == 1 or s.gpus in (0, s.parallelism.workers)),
    rule("self.backend != 'vllm' || (self.gpus >= 1 && self.gpus % self.parallelism.workers == 0)",
         "backend vllm runs on GPUs: gpus must be a positive multiple of parallelism.workers (each replica "
         "takes gpus / workers GPUs by tensor parallelism)",
         lambda s: s.backend != "vllm" or (s.gpus >= 1 and s.gpus % s.parallelism.workers == 0)),
    rule("self.backend != 'vllm' || !has(self.lmmsEval.model) || self.lmmsEval.model == 'vllm'",
         "lmmsEval.model: backend vllm evaluates with lmms-eval's vllm model, so leave lmmsEval.model out",
         lambda s: s.backend != "vllm" or s.lmms_eval.model in (None, "vllm")),
    rule("!('pretrained' in self.lmmsEval.modelArgs)",
         "lmmsEval.modelArgs.pretrained: the checkpoint comes from spec.model",
         lambda s: "pretrained" not in s.lmms_eval.model_args),
    rule("self.backend != 'vllm' || !['model', 'tensor_parallel_size', 'data_parallel_size']"
         ".exists(k, k in self.lmmsEval.modelArgs)",
         "lmmsEval.modelArgs: with backend vllm, model, tensor_parallel_size and data_parallel_size come from "
         "spec.model, spec.gpus and spec.parallelism.workers",
         lambda s: s.backend != "vllm" or not set(s.lmms_eval.model_args) & set(VLLM_RESERVED)),
)


class EvalSuiteSpec(CommonSpec):
    RULES = _EVAL_RULES

    model: PolicyRef
    lmms_eval: LmmsEval
    backend: Literal["hf", "vllm"] = Field("hf", description=(
        "hf: lmmsEval.model on transformers (any image, CPU or GPU); vllm: lmms-eval's vllm model on the "
        "eval-vllm image, GPUs only."))
    parallelism: EvalParallelism = Field(default_factory=EvalParallelism)
    thresholds: dict[str, float] = Field(default_factory=dict, description="task/metric -> minimum value.")
    gpus: int = Field(1, ge=0)
    output: OutputSpec

    def lmms_eval_model(self) -> str:
        return self.lmms_eval.model or DEFAULT_MODEL[self.backend]


class EvalResult(Model):
    task: str
    metric: str
    value: float


class EvalSuiteStatus(CommonStatus):
    results: list[EvalResult] | None = None
    passed: int | None = None
    total: int | None = None
    failing: list[str] | None = None
    lmms_eval_version: str | None = None
    partial: bool | None = None


KIND = KindAPI("EvalSuite", "evalsuites", "evs", EvalSuiteSpec, EvalSuiteStatus, "Succeeded", [
    PHASE, column("Passed", ".status.passed", "integer"), column("Total", ".status.total", "integer"), AGE])
