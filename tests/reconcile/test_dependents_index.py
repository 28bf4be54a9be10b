"""Finding an input's dependents reads an index kept from the watch stream, never a list of every CR."""
from __future__ import annotations

from pipeline_driver import example_docs

from vlmops.handlers import dependents, references_index
from vlmops.kinds import KINDS


def _index(docs: list[dict]) -> dict[str, dict]:
    """What kopf builds from the index functions: per kind, key -> the values of every object."""
    out: dict[str, dict] = {k: {} for k in KINDS}
    for d in docs:
        entries = references_index(KINDS[d["kind"]])(namespace=d["metadata"]["namespace"],
                                                     name=d["metadata"]["name"], spec=d["spec"])
        for key, value in entries.items():
            out[d["kind"]].setdefault(key, []).append(value)
    return out


def test_each_input_finds_exactly_the_crs_that_reference_it():
    docs = example_docs("ml")
    index = _index(docs)
    # cross-check against the slow way: every CR's own references
    for d in docs:
        mine = (d["kind"], d["metadata"]["name"])
        slow = sorted((o["kind"], o["metadata"]["name"]) for o in docs if mine in KINDS[o["kind"]].references(
            KINDS[o["kind"]].spec.model_validate(o["spec"])))
        assert dependents(index, *mine[:1], "ml", mine[1]) == slow
    assert dependents(index, "PackedDataset", "ml", "mid-training-8k")  # the recipe's stages read it
    assert dependents(index, "PackedDataset", "other-namespace", "mid-training-8k") == []


def test_an_invalid_spec_indexes_nothing():
    bad = {"kind": "PackedDataset", "metadata": {"namespace": "ml", "name": "x"}, "spec": {"shards": "many"}}
    assert references_index(KINDS["PackedDataset"])(namespace="ml", name="x", spec=bad["spec"]) == {}
