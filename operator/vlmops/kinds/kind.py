"""`Kind`: one kind as the operator sees it — its API identity plus what the reconciler, metrics,
local runner and report need to know about it (the behaviour behind `if kind == ...`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..api.kind import KindAPI
from ..builders import BuildContext, Plan
from ..builders.inputs import Inputs

Reference = tuple[str, str]  # (kind, name) of another CR in the same namespace


def _no_references(spec: Any) -> list[Reference]:
    return []


def _output_only(spec: Any) -> dict[str, Any]:
    return {"output": {"uri": spec.output.uri}}


def _nothing(*_: Any) -> None:
    return None


def set_gauges(values: dict[str, Any], namespace: str, name: str, gauges: dict[str, Any]) -> None:
    """Set each gauge (by the status key it mirrors) that has a value in `values`."""
    for key, gauge in gauges.items():
        if values.get(key) is not None:
            gauge.labels(namespace, name).set(values[key])


def _no_detail(status: dict[str, Any]) -> str:
    return ""


@dataclass(frozen=True)
class Kind:
    api: KindAPI
    position: int  # order in tables and listings (pipeline order)
    build: Callable[[dict[str, Any], Any, Inputs, BuildContext], Plan]
    final_step: str  # the step whose success completes the CR (the builder's last)
    result_keys: tuple[str, ...]  # keys of the jobs' result lines copied into status
    references: Callable[[Any], list[Reference]] = _no_references
    # Sharded steps whose Indexed Job counts become status.progress (shardsCompleted/Total).
    shard_progress_steps: tuple[str, ...] = ()
    # status.job names the child (a training stage's PyTorchJob: users look it up with kubectl).
    records_job: bool = False
    # Status fields once done (output locations), known from the spec alone.
    outputs: Callable[[Any], dict[str, Any]] = _output_only
    # Fields derived once every step succeeded; returns (reason, message) when the CR fails anyway.
    finish: Callable[[Any, dict[str, Any]], tuple[str, str] | None] = _nothing
    export_metrics: Callable[[str, str, dict[str, Any]], None] = _nothing  # (namespace, name, status)
    gauges: tuple = ()  # the per-CR gauges export_metrics sets (removed with the CR)
    status_detail: Callable[[dict[str, Any]], str] = _no_detail  # one line for `vlmops status`
    # While Running, the operator mirrors the job's progress document into status on a timer.
    mirrors_progress: bool = False
    report_html: Callable[[dict[str, Any]], str] | None = None  # an extra section in report.html
    # (field path, value, "shards" | "nodes" | "gpus"): what the platform's size limits apply to
    sizes: Callable[[Any], list[tuple[str, int, str]]] = lambda spec: []
    plots_loss: bool = False  # the report draws its training loss curve

    def __getattr__(self, name: str) -> Any:
        # The API identity, forwarded: callers say kind.plural, kind.spec, kind.done_condition.
        if name == "api":  # not set yet (copy/unpickle): never recurse
            raise AttributeError(name)
        return getattr(self.api, name)
