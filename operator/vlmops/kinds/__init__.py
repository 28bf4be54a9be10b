"""The kind table: everything one kind means to the operator, one module per kind.

The reconciler, handlers, local runner, report, CLI and CRD generation iterate `KINDS`; nothing
else branches on a kind's name. A fifth kind is its API types (`api/<kind>.py` with its `KIND`),
its builder (`builders/<kind>.py`) and one module here defining `KIND = Kind(...)`: modules are
found by listing this package, so the table itself needs no edit.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ..builders import BuildContext, Inputs, Plan
from .kind import Kind, Reference


def _discover() -> dict[str, Kind]:
    found = [importlib.import_module(f"{__name__}.{m.name}").KIND
             for m in pkgutil.iter_modules(__path__) if m.name != "kind"]
    return {k.kind: k for k in sorted(found, key=lambda k: k.position)}


KINDS: dict[str, Kind] = _discover()


def parse_spec(cr: dict[str, Any]):
    """Validate a CR's spec with its kind's model (raises pydantic.ValidationError)."""
    return KINDS[cr["kind"]].spec.model_validate(cr.get("spec") or {})


def references(cr: dict[str, Any]) -> list[Reference]:
    """(kind, name) of every CR this one reads (its spec must be valid)."""
    return KINDS[cr["kind"]].references(parse_spec(cr))


def build(cr: dict[str, Any], inputs: Inputs | None = None, ctx: BuildContext | None = None) -> Plan:
    """The CR's plan: its kind's builder over its validated spec (raises pydantic.ValidationError)."""
    return KINDS[cr["kind"]].build(cr, parse_spec(cr), inputs or {}, ctx or BuildContext())


def planned_status(cr: dict[str, Any]) -> dict[str, Any]:
    """The status a CR will have once done, as far as its dependents need it (output locations).

    Used to render a whole pipeline offline (`vlmops render`) before anything has run; the
    operator itself only ever uses real statuses.
    """
    kind = KINDS[cr["kind"]]
    return {"conditions": [{"type": kind.done_condition, "status": "True", "reason": "Planned"}],
            **kind.outputs(parse_spec(cr))}


__all__ = ["KINDS", "Kind", "Reference", "build", "parse_spec", "planned_status", "references"]
