"""vlmops_resources counts CRs by kind and phase, and forgets deleted ones."""
from __future__ import annotations

from prometheus_client import REGISTRY

from vlmops import status_metrics


def _gauge(kind: str, phase: str) -> float:
    return REGISTRY.get_sample_value("vlmops_resources", {"kind": kind, "phase": phase}) or 0.0


def test_phase_gauge_counts_and_forgets():
    obj = lambda n: {"kind": "EvalSuite", "metadata": {"namespace": "m", "name": n}}  # noqa: E731
    base = _gauge("EvalSuite", "Running")
    status_metrics.observe(obj("a"), {"phase": "Running"})
    status_metrics.observe(obj("b"), {"phase": "Running"})
    assert _gauge("EvalSuite", "Running") == base + 2
    status_metrics.observe(obj("b"), {"phase": "Succeeded", "results": [
        {"task": "t", "metric": "acc", "value": 0.5}], "passed": 1})
    assert _gauge("EvalSuite", "Running") == base + 1
    assert REGISTRY.get_sample_value("vlmops_eval_score", {"namespace": "m", "suite": "b", "task": "t",
                                                           "metric": "acc"}) == 0.5
    status_metrics.forget("EvalSuite", "m", "a")
    status_metrics.forget("EvalSuite", "m", "b")
    assert _gauge("EvalSuite", "Running") == base
