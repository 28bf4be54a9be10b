"""What the API server knows of a kind: names, spec/status types, printer columns, done condition.

Each kind's API module (`api/<kind>.py`) defines its `KIND`; CRDs are generated from them. The
operator's view of a kind (builder, results, metrics...) is `vlmops.kinds`.
"""
from __future__ import annotations

import re

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


# CR names: a DNS-1035 label of any length (Kubernetes allows dots and a leading digit in names of
# custom resources). Child names and label values are derived from the CR name by replacing what a
# DNS-1035 label cannot hold and hashing what is too long; without dots and leading digits, that
# derivation stays one-to-one ("a.b" and "a-b" would otherwise own the same Jobs).
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MESSAGE = ("lowercase letters, digits and '-', starting with a letter and ending with a letter or digit "
                "(no dots: child Job names are derived from it)")
NAME_RULE = {"rule": f"self.metadata.name.matches('{NAME_PATTERN}')", "message": f"metadata.name: {NAME_MESSAGE}"}


def name_problem(name: str) -> str | None:
    """`metadata.name: why` when `name` breaks `NAME_RULE` (the CRD's CEL check, for `vlmops validate`
    and for CRs stored before the rule existed)."""
    return None if re.fullmatch(NAME_PATTERN, name or "") else f"metadata.name: {name!r}: {NAME_MESSAGE}"
