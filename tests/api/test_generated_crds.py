"""CRDs are generated from the API types; the committed files must match, and be structural."""
from __future__ import annotations

from pathlib import Path

import yaml

from vlmops.kinds import KINDS
from vlmops.crdgen import render_all

REPO = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_api_types():
    generated = render_all()
    on_disk = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    assert set(on_disk) == set(generated), "crds/ has missing or extra files: run `vlmops crds`"
    for name, text in generated.items():
        assert on_disk[name] == text, f"crds/{name} drifted from the API types: run `vlmops crds`"


def test_crd_generation_gives_the_same_files_every_time():
    assert render_all() == render_all()


def _walk(node, path="$"):
    yield path, node
    for k, v in (node.get("properties") or {}).items():
        yield from _walk(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_every_crd_schema_is_structural():
    for text in render_all().values():
        crd = yaml.safe_load(text)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            # the structural-schema rule's exceptions: int-or-string and preserve-unknown-fields nodes
            untyped = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
            assert "type" in node or untyped, f"{path} has no type"
            for banned in ("$ref", "anyOf", "oneOf", "allOf", "const", "title"):
                assert banned not in node, f"{path} uses {banned}"
            if "exclusiveMinimum" in node:
                assert isinstance(node["exclusiveMinimum"], bool)


def test_each_crd_has_its_names_printer_columns_and_status_subresource():
    for kind in KINDS.values():
        crd = yaml.safe_load(render_all()[f"vlmops.dev_{kind.plural}.yaml"])
        names = crd["spec"]["names"]
        assert names["shortNames"] == [kind.short]
        assert names["categories"] == ["vlmops"]
        v = crd["spec"]["versions"][0]
        assert v["subresources"] == {"status": {}}
        cols = [c["name"] for c in v["additionalPrinterColumns"]]
        assert cols[-1] == "Age"
    short = {k.short for k in KINDS.values()}
    assert short == {"bc", "pds", "vts", "evs", "vrl"}


def test_defaults_and_cel_rules_are_in_the_schema():
    vts = yaml.safe_load(render_all()["vlmops.dev_vlmtrainingstages.yaml"])
    spec = vts["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["gpuResource"]["default"] == "nvidia.com/gpu"
    assert spec["properties"]["parallelism"]["default"] == {}
    assert spec["properties"]["parallelism"]["properties"]["tensor"]["default"] == 1
    assert spec["properties"]["trainable"]["default"] == ["vision", "projector", "language"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert any("gpusPerNode" in r for r in rules)
    init_rules = [r["rule"] for r in spec["properties"]["initFrom"]["x-kubernetes-validations"]]
    assert init_rules == ["(has(self.trainingStage) ? 1 : 0) + (has(self.checkpoint) ? 1 : 0) + "
                          "(has(self.huggingFace) ? 1 : 0) == 1"]
    bc = yaml.safe_load(render_all()["vlmops.dev_balancedcorpora.yaml"])
    bal = bc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["balancing"]
    assert "threshold" in bal["x-kubernetes-validations"][0]["rule"]
    assert bal["properties"]["threshold"]["exclusiveMinimum"] is True
