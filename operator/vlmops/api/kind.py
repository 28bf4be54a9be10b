"""What the API server knows of a kind: names, spec/status types, printer columns, done condition.

Each kind's API module (`api/<kind>.py`) defines its `KIND`; CRDs are generated from them. The
operator's view of a kind (builder, results, metrics...) is `vlmops.kinds`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .common import CommonStatus, Model


@dataclass(frozen=True)
class KindAPI:
    kind: str
    plural: str
    short: str
    spec: type[Model]
    status: type[CommonStatus]
    done_condition: str  # "Ready" for datasets, "Succeeded" for stages and evals
    columns: list[dict[str, Any]] = field(default_factory=list)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def done_phase(self) -> str:
        return "Ready" if self.done_condition == "Ready" else "Succeeded"


def column(name: str, path: str, type_: str = "string", **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path, **kw}


AGE = column("Age", ".metadata.creationTimestamp", "date")
READY = column("Ready", '.status.conditions[?(@.type=="Ready")].status')
PHASE = column("Phase", ".status.phase")
