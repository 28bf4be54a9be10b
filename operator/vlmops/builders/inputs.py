"""Reading the inputs a CR references (other CRs, by name, same namespace)."""
from __future__ import annotations

from typing import Any

from ..api.kinds import KINDS

Inputs = dict[tuple[str, str], dict[str, Any] | None]  # (kind, name) -> object (None: not found)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def is_done(obj: dict[str, Any]) -> bool:
    """Ready (datasets) / Succeeded (stages, evals), for the object's current generation."""
    kind = KINDS[obj["kind"]]
    c = condition(obj, kind.done_condition)
    if not c or c.get("status") != "True":
        return False
    gen = obj.get("metadata", {}).get("generation")
    return c.get("observedGeneration") in (None, gen) or gen is None


def resolve(inputs: Inputs, kind: str, name: str, waiting: list[str]) -> dict[str, Any] | None:
    """The input object if it is done; otherwise record why we wait and return None."""
    obj = inputs.get((kind, name))
    if obj is None:
        waiting.append(f"{kind}/{name} not found")
        return None
    if not is_done(obj):
        waiting.append(f"{kind}/{name} is not {KINDS[kind].done_condition} yet")
        return None
    return obj


def output_uri(obj: dict[str, Any]) -> str:
    out = ((obj.get("status") or {}).get("output") or {}).get("uri")
    if out:
        return out
    return obj["spec"]["output"]["uri"]


def references(kind: str, spec: Any) -> list[tuple[str, str]]:
    """(kind, name) of every CR this spec reads, so callers can fetch them."""
    refs: list[tuple[str, str]] = []
    if kind == "PackedDataset" and spec.source.balanced_corpus:
        refs.append(("BalancedCorpus", spec.source.balanced_corpus))
    if kind == "VLMTrainingStage":
        refs.append(("PackedDataset", spec.data.packed_dataset))
        if spec.init_from and spec.init_from.training_stage:
            refs.append(("VLMTrainingStage", spec.init_from.training_stage))
    if kind == "EvalSuite" and spec.model.training_stage:
        refs.append(("VLMTrainingStage", spec.model.training_stage))
    return refs


def planned_status(cr: dict[str, Any]) -> dict[str, Any]:
    """The status a CR will have once done, as far as its dependents need it (output locations).

    Used to render a whole pipeline offline (`vlmops render`) before anything has run; the
    operator itself only ever uses real statuses.
    """
    kind = KINDS[cr["kind"]]
    spec = kind.spec.model_validate(cr.get("spec") or {})
    status: dict[str, Any] = {"conditions": [{"type": kind.done_condition, "status": "True", "reason": "Planned"}]}
    if cr["kind"] == "VLMTrainingStage":
        out = spec.output_uri()
        status.update(output={"uri": out}, hf=f"{out.rstrip('/')}/hf",
                      checkpoint={"latest": spec.checkpoint.uri})
    else:
        status["output"] = {"uri": spec.output.uri}
    return status
