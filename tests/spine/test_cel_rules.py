"""The CRDs' CEL rules mean what the pydantic checks mean: evaluate the CEL text with a CEL engine
(cel-python) on defaulted specs, the way the API server does, and compare with pydantic."""
from __future__ import annotations

import copy

import celpy
import pytest
import yaml
from pydantic import ValidationError

from vlmops.api.kinds import KINDS
from vlmops.crdgen import crd
from vlmops.manifests import with_defaults

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_ENV = celpy.Environment()


def cel_failures(kind: str, spec: dict) -> list[str]:
    """Messages of every CEL rule that fails on `spec` (walking the schema like the API server)."""
    schema = crd(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    out: list[str] = []

    def walk(node: dict, value) -> None:
        if value is None:
            return
        for r in node.get("x-kubernetes-validations", []):
            ok = _ENV.program(_ENV.compile(r["rule"])).evaluate({"self": celpy.json_to_cel(value)})
            if not bool(ok):
                out.append(r["message"])
        if isinstance(value, dict):
            for k, sub in (node.get("properties") or {}).items():
                walk(sub, value.get(k))

    walk(schema, spec)
    return out


def pydantic_failures(kind: str, spec: dict) -> list[str]:
    try:
        KINDS[kind].spec.model_validate(spec)
        return []
    except ValidationError as e:
        return [m for err in e.errors() for m in err["msg"].removeprefix("Value error, ").split("; ")]


def _examples():
    for d in ("llava-ov-1.5", "quickstart"):
        for f in sorted((REPO / "examples" / d).glob("*.yaml")):
            yield from (o for o in yaml.safe_load_all(f.read_text()) if o)


def _stage():
    return next(with_defaults(o) for o in _examples() if o["kind"] == "VLMTrainingStage"
                and o["metadata"]["name"] == "stage-1-5-mid-training")


def _kind(kind):
    return next(with_defaults(o) for o in _examples() if o["kind"] == kind)


def test_examples_pass_both():
    for obj in _examples():
        spec = with_defaults(obj)["spec"]
        assert cel_failures(obj["kind"], spec) == [] == pydantic_failures(obj["kind"], spec)


def _mut(obj, fn):
    obj = copy.deepcopy(obj)
    fn(obj["spec"])
    return obj["kind"], obj["spec"]


CASES = {
    "initFrom two options": (lambda: _mut(_stage(), lambda s: s.update(initFrom={"checkpoint": "s3://a", "huggingFace": "x/y"})),
                             "exactly one of trainingStage, checkpoint, huggingFace must be set"),
    "world size": (lambda: _mut(_stage(), lambda s: s.update(nodes=1, gpusPerNode=6, parallelism={**s["parallelism"], "tensor": 4})),
                   "world size (nodes*gpusPerNode) must be divisible by tensor*pipeline*context"),
    "micro batch": (lambda: _mut(_stage(), lambda s: s["batch"].update(micro=2)),
                    "batch.micro must be 1: packed sequences are one micro-batch each"),
    "explicit heads": (lambda: _mut(_stage(), lambda s: s.update(model={
        "vision": {"numLayers": 2, "hiddenSize": 64, "numAttentionHeads": 4},
        "language": {"numLayers": 2, "hiddenSize": 60, "numAttentionHeads": 6, "ffnHiddenSize": 128, "vocabSize": 100}},
        parallelism={**s["parallelism"], "tensor": 4}, nodes=1, gpusPerNode=8)),
        "model.language.numAttentionHeads must be divisible by parallelism.tensor"),
    "preset plus blocks": (lambda: _mut(_stage(), lambda s: s["model"].update(
        language={"numLayers": 2, "hiddenSize": 64, "numAttentionHeads": 4, "ffnHiddenSize": 128, "vocabSize": 100})),
        "preset cannot be combined with explicit vision/language blocks"),
    "threshold and target": (lambda: _mut(_kind("BalancedCorpus"), lambda s: s["balancing"].update(threshold=20000.0)),
                             "at most one of threshold, targetSamples may be set"),
    "pds two sources": (lambda: _mut(_kind("PackedDataset"), lambda s: s["source"].update(uri="s3://x/y")),
                        "exactly one of balancedCorpus, uri must be set"),
    "pixels": (lambda: _mut(_kind("PackedDataset"), lambda s: s["image"].update(minPixels=10_000_000)),
               "minPixels must not exceed maxPixels"),
    "eval model none": (lambda: _mut(_kind("EvalSuite"), lambda s: s.update(model={})),
                        "exactly one of trainingStage, checkpoint, huggingFace must be set"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_fails_the_same_way_in_cel_and_pydantic(case):
    make, message = CASES[case]
    kind, spec = make()
    assert message in cel_failures(kind, spec)
    assert message in pydantic_failures(kind, spec)


def test_preset_heads_are_checked_by_the_operator_only():
    """CEL cannot see a preset's head count (it is not in the CR); pydantic (vlmops validate, the
    operator, the local runner) resolves the preset and catches it."""
    kind, spec = _mut(_stage(), lambda s: s.update(parallelism={**s["parallelism"], "tensor": 8},
                                                   nodes=1, gpusPerNode=8, model={"preset": "tiny"}))
    assert cel_failures(kind, spec) == []
    assert "model.language.numAttentionHeads must be divisible by parallelism.tensor" in pydantic_failures(kind, spec)


def test_api_preset_names_match_the_trainer():
    import typing

    from vlmops.api.training_stage import PRESET_NAMES, ModelSpec
    from vlmops_jobs.train.presets import PRESETS

    assert set(PRESET_NAMES) == set(PRESETS)
    literal = typing.get_args(typing.get_args(ModelSpec.model_fields["preset"].annotation)[0])
    assert set(literal) == set(PRESETS)
