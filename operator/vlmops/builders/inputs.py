"""The inputs a CR reads: other CRs by (kind, name) in its namespace, fetched before building."""
from __future__ import annotations

from typing import Any

from ..api.kind import KindAPI

Inputs = dict[tuple[str, str], dict[str, Any] | None]  # (kind, name) -> object (None: not found)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def is_done(obj: dict[str, Any], done_condition: str) -> bool:
    """Ready (datasets) / Succeeded (stages, evals), for the object's current generation."""
    c = condition(obj, done_condition)
    if not c or c.get("status") != "True":
        return False
    gen = obj.get("metadata", {}).get("generation")
    return c.get("observedGeneration") in (None, gen) or gen is None


def resolve(inputs: Inputs, kind: KindAPI, name: str, waiting: list[str]) -> dict[str, Any] | None:
    """The input object if it is done; otherwise record why we wait and return None."""
    obj = inputs.get((kind.kind, name))
    if obj is None:
        waiting.append(f"{kind.kind}/{name} not found")
        return None
    if not is_done(obj, kind.done_condition):
        waiting.append(f"{kind.kind}/{name} is not {kind.done_condition} yet")
        return None
    return obj


def output_uri(obj: dict[str, Any]) -> str:
    out = ((obj.get("status") or {}).get("output") or {}).get("uri")
    if out:
        return out
    return obj["spec"]["output"]["uri"]
