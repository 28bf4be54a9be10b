"""VLMTrainingStage: reads a PackedDataset (and maybe a previous stage); one PyTorchJob; progress is
mirrored from the job's progress document while it runs; the HF export is what evals read."""
from __future__ import annotations

from typing import Any

from vlmops_contract.layouts import join
from vlmops_contract.layouts.train import HF_EXPORT

from .. import metrics
from ..api import training_stage as api
from ..builders import training_stage as builder
from .kind import Kind, Reference, set_gauges


def references(spec: api.VLMTrainingStageSpec) -> list[Reference]:
    refs = [("PackedDataset", spec.data.packed_dataset)]
    if spec.init_from and spec.init_from.training_stage:
        refs.append(("VLMTrainingStage", spec.init_from.training_stage))
    return refs


def outputs(spec: api.VLMTrainingStageSpec) -> dict[str, Any]:
    out = spec.output_uri()
    return {"output": {"uri": out}, "hf": join(out, HF_EXPORT), "checkpoint": {"latest": spec.checkpoint.uri}}


def export_metrics(ns: str, name: str, status: dict[str, Any]) -> None:
    set_gauges(status.get("progress") or {}, ns, name, {"step": metrics.TRAIN_STEP,
                                                         "tokensPerSecond": metrics.TRAIN_TOKENS,
                                                         "mfu": metrics.TRAIN_MFU})


def status_detail(status: dict[str, Any]) -> str:
    p = status.get("progress") or {}
    return f"step {p.get('step')}/{p.get('totalSteps')}, loss {p.get('loss')}" if p else ""


KIND = Kind(
    api=api.KIND, position=2, build=builder.build, final_step="train",
    result_keys=("progress", "checkpoint", "output", "hf"), references=references, records_job=True,
    outputs=outputs, export_metrics=export_metrics, status_detail=status_detail, mirrors_progress=True,
    plots_loss=True, sizes=lambda spec: [("spec.nodes", spec.nodes, "nodes"),
                                         ("spec.nodes x spec.gpusPerNode", spec.world_size, "gpus")],
    gauges=(metrics.TRAIN_STEP, metrics.TRAIN_TOKENS, metrics.TRAIN_MFU),
)
