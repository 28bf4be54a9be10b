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


def _series(name: str) -> list[dict]:
    return [s.labels for m in REGISTRY.collect() for s in m.samples if s.name == name]


def test_a_deleted_crs_series_and_an_eval_suites_old_tasks_are_removed():
    obj = lambda kind, n: {"kind": kind, "metadata": {"namespace": "gone", "name": n}}  # noqa: E731
    status_metrics.observe(obj("EvalSuite", "s"), {"phase": "Succeeded", "passed": 1, "results": [
        {"task": "old_task", "metric": "acc", "value": 0.5}]})
    status_metrics.observe(obj("EvalSuite", "s"), {"phase": "Succeeded", "passed": 1, "results": [
        {"task": "new_task", "metric": "acc", "value": 0.6}]})
    assert [s["task"] for s in _series("vlmops_eval_score") if s["namespace"] == "gone"] == ["new_task"]
    status_metrics.observe(obj("PackedDataset", "p"), {"phase": "Ready", "stats": {"packingEfficiency": 0.99}})
    status_metrics.observe(obj("PackedDataset", "keep"), {"phase": "Ready", "stats": {"packingEfficiency": 0.9}})
    status_metrics.forget("EvalSuite", "gone", "s")
    status_metrics.forget("PackedDataset", "gone", "p")
    left = [s for n in ("vlmops_eval_score", "vlmops_eval_passed", "vlmops_packing_efficiency")
            for s in _series(n) if s["namespace"] == "gone"]
    assert left == [{"namespace": "gone", "name": "keep"}]
    status_metrics.forget("PackedDataset", "gone", "keep")


def test_forgetting_a_cr_keeps_another_kinds_cr_of_the_same_name():
    obj = lambda kind: {"kind": kind, "metadata": {"namespace": "same", "name": "x"}}  # noqa: E731
    status_metrics.observe(obj("PackedDataset"), {"phase": "Ready", "stats": {"packingEfficiency": 0.9}})
    status_metrics.observe(obj("BalancedCorpus"), {"phase": "Ready", "stats": {"selectedSamples": 7}})
    status_metrics.forget("PackedDataset", "same", "x")
    assert not [s for s in _series("vlmops_packing_efficiency") if s["namespace"] == "same"]
    assert [s for s in _series("vlmops_balance_selected_samples") if s["namespace"] == "same"]
    status_metrics.forget("BalancedCorpus", "same", "x")
    assert not [s for s in _series("vlmops_balance_selected_samples") if s["namespace"] == "same"]
