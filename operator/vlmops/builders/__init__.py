"""Builders: a validated CR (+ its inputs) in, ordered child manifests out. Pure, no I/O."""
from __future__ import annotations

from typing import Any

from ..api.kinds import KINDS
from . import balanced_corpus, eval_suite, packed_dataset, training_stage
from .common import BuildContext, Plan, Step, child_name
from .inputs import Inputs, references

_BUILDERS = {
    "BalancedCorpus": balanced_corpus.build,
    "PackedDataset": packed_dataset.build,
    "VLMTrainingStage": training_stage.build,
    "EvalSuite": eval_suite.build,
}


def parse_spec(cr: dict[str, Any]):
    """Validate a CR's spec with its kind's model (raises pydantic.ValidationError)."""
    return KINDS[cr["kind"]].spec.model_validate(cr.get("spec") or {})


def build(cr: dict[str, Any], inputs: Inputs | None = None, ctx: BuildContext | None = None) -> Plan:
    spec = parse_spec(cr)
    return _BUILDERS[cr["kind"]](cr, spec, inputs or {}, ctx or BuildContext())


__all__ = ["BuildContext", "Plan", "Step", "build", "child_name", "parse_spec", "references", "Inputs"]
