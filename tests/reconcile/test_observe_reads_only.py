"""`observe` only reads (`kubeapi.KubeReader`): `vlmops render` and `validate` run it against an
offline stand-in that has nothing else. Run here through an object that refuses any other call, on
every example CR, before and after its first child exists and after that child succeeded."""
from __future__ import annotations

import pytest

from fake_api import FakeKube
from pipeline_driver import example_docs
from vlmops import reconciler
from vlmops.builders import BuildContext
from vlmops.kinds import KINDS, planned_status
from vlmops.kubeapi import READS

CTX = BuildContext()


class ReadsOnly:
    def __init__(self, kube):
        self.kube, self.calls = kube, set()

    def __getattr__(self, name):
        if name not in READS:
            raise AssertionError(f"observe called {name}, which is not a KubeReader read")
        self.calls.add(name)
        return getattr(self.kube, name)


def _crs():
    return [(d["kind"], d["metadata"]["name"]) for d in example_docs("ns")]


@pytest.mark.parametrize("kind,name", _crs())
def test_observe_makes_only_reads_in_every_state_of_a_cr(kind, name):
    kube = FakeKube(example_docs("ns"))
    reader = ReadsOnly(kube)
    reconciler.observe(reader, KINDS[kind], "ns", name, CTX)  # fresh: no children, inputs not ready
    for other_kind, other in _crs():  # inputs become Ready as planned: this CR creates its first child
        obj = kube.crs[(other_kind, other)]
        if (other_kind, other) != (kind, name):
            obj["status"] = planned_status(obj)
    out = reconciler.reconcile(kube, kind, "ns", name, CTX)
    assert out.created, (kind, name)
    reconciler.observe(reader, KINDS[kind], "ns", name, CTX)  # a child running
    kube.succeed(out.created[-1], {"stats": {}})
    reconciler.observe(reader, KINDS[kind], "ns", name, CTX)  # the child finished, its pod's result read
    assert set(READS) <= reader.calls
