"""Mirroring CR statuses into Prometheus gauges: phases per kind, plus each kind's own numbers
(`Kind.export_metrics`). No writes, no storage access; dashboards need only this."""
from __future__ import annotations

from typing import Any

from . import metrics
from .kinds import KINDS

_PHASES: dict[tuple[str, str, str], str] = {}  # (kind, namespace, name) -> phase, for vlmops_resources
PHASES = ("Pending", "Running", "Ready", "Succeeded", "Failed")


def _set_phase_gauges(kind: str) -> None:
    counts: dict[str, int] = {}
    for (k, _, _), phase in _PHASES.items():
        if k == kind:
            counts[phase] = counts.get(phase, 0) + 1
    for phase in PHASES:
        metrics.RESOURCES.labels(kind, phase).set(counts.get(phase, 0))


def observe(obj: dict[str, Any], status: dict[str, Any]) -> None:
    ns, name, kind = obj["metadata"]["namespace"], obj["metadata"]["name"], obj["kind"]
    _PHASES[(kind, ns, name)] = status.get("phase") or "Pending"
    _set_phase_gauges(kind)
    KINDS[kind].export_metrics(ns, name, status)


def forget(kind: str, namespace: str, name: str) -> None:
    """A deleted CR no longer counts in vlmops_resources, and its own series go with it."""
    if _PHASES.pop((kind, namespace, name), None) is not None:
        _set_phase_gauges(kind)
    metrics.remove_series(namespace, name, KINDS[kind].gauges)
