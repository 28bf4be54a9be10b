"""vlmops_resources counts CRs by kind and phase, and forgets deleted ones."""
from __future__ import annotations

from prometheus_client import REGISTRY

from vlmops import results


def _gauge(kind: str, phase: str) -> float:
    return REGISTRY.get_sample_value("vlmops_resources", {"kind": kind, "phase": phase}) or 0.0


def test_phase_gauge_counts_and_forgets():
    obj = lambda n: {"kind": "EvalSuite", "metadata": {"namespace": "m", "name": n}}  # noqa: E731
    base = _gauge("EvalSuite", "Running")
    results.export_metrics(obj("a"), {"phase": "Running"})
    results.export_metrics(obj("b"), {"phase": "Running"})
    assert _gauge("EvalSuite", "Running") == base + 2
    results.export_metrics(obj("b"), {"phase": "Succeeded", "results": [
        {"task": "t", "metric": "acc", "value": 0.5}], "passed": 1})
    assert _gauge("EvalSuite", "Running") == base + 1
    assert REGISTRY.get_sample_value("vlmops_eval_score", {"namespace": "m", "suite": "b", "task": "t",
                                                           "metric": "acc"}) == 0.5
    results.forget("EvalSuite", "m", "a")
    results.forget("EvalSuite", "m", "b")
    assert _gauge("EvalSuite", "Running") == base
