"""EvalSuite -> one Job running lmms-eval on the resolved model (`parallelism.workers` data-parallel
ranks inside its pod; backend vllm on the eval-vllm image)."""
from __future__ import annotations

from typing import Any

from ..api.eval_suite import EvalSuiteSpec
from .common import BuildContext, Plan, Step, flag_args, job, py
from .inputs import Inputs
from .rl_stage import policy_uri


def model_uri(spec: EvalSuiteSpec, inputs: Inputs, waiting: list[str]) -> tuple[str | None, str | None]:
    """(model location, expected digest): a stage's export is checked against the digest of the
    stage's output manifest, so the eval cannot silently score different weights."""
    return policy_uri(spec.model, inputs, waiting)  # a training or RL stage's export, a URI, an HF repo id


def model_arg(value: str | int | float | bool) -> str:
    """A modelArgs value in the form lmms-eval's `key=value` parser reads back as the same type."""
    return str(value)  # True/False, 3240000, 0.5 parse back to bool/int/float; strings stay as written


def build(cr: dict[str, Any], spec: EvalSuiteSpec, inputs: Inputs, ctx: BuildContext) -> Plan:
    waiting: list[str] = []
    model, digest = model_uri(spec, inputs, waiting)
    if model is None:
        return Plan(waiting_for=waiting)
    le = spec.lmms_eval
    args = py("evaluate", "run", *flag_args([
        ("--model-uri", model), ("--model-digest", digest), ("--lmms-eval-model", spec.lmms_eval_model()),
        ("--model-args", ",".join(f"{k}={model_arg(v)}" for k, v in sorted(le.model_args.items())) or None),
        ("--tasks", le.tasks), ("--batch-size", le.batch_size), ("--limit", le.limit),
        ("--include-path", le.include_path), ("--expected-version", le.version),
        ("--backend", spec.backend if spec.backend != "hf" else None),
        ("--workers", spec.parallelism.workers if spec.parallelism.workers > 1 else None),
        ("--gpus", spec.gpus if spec.backend == "vllm" else None),
    ]), "--output", spec.output.uri)
    resources = {"limits": {"nvidia.com/gpu": str(spec.gpus)}} if spec.gpus else None
    return Plan(steps=[Step("eval", job(cr, spec, "eval", args, ctx, resources=resources,
                                         image_key="evalVllm" if spec.backend == "vllm" else "eval"))],
                inputs={"model": model})
