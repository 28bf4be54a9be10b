"""EvalSuite (`evs`): lmms-eval against a checkpoint, thresholds as a gate."""
from __future__ import annotations

from pydantic import Field

from .kind import AGE, PHASE, KindAPI, column
from .common import CommonSpec, CommonStatus, Model, OutputSpec
from .training_stage import ModelRef


class LmmsEval(Model):
    version: str = Field("0.7.3", pattern=r"^\d+\.\d+\.\d+$", description="Pinned lmms-eval version.")
    model: str = "llava_onevision1_5"
    model_args: dict[str, str] = Field(default_factory=dict)
    tasks: list[str] = Field(..., min_length=1)
    batch_size: int = Field(1, ge=1)
    limit: int | None = Field(None, ge=1)
    include_path: str | None = Field(None, description="URI of a directory of custom task YAMLs.")


class EvalSuiteSpec(CommonSpec):
    model: ModelRef
    lmms_eval: LmmsEval
    thresholds: dict[str, float] = Field(default_factory=dict, description="task/metric -> minimum value.")
    gpus: int = Field(1, ge=0)
    output: OutputSpec


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
