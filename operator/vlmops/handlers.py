"""kopf wiring: which events trigger `reconciler.reconcile`. No logic lives here.

- each kind: on.create / on.resume / on.update(spec) reconcile the object itself;
- child Jobs / PyTorchJobs (our labels): any event reconciles the parent named in the labels;
- each kind's events reconcile the CRs that reference it (so a pipeline applied at once
  starts each step as soon as its input turns Ready).
Handlers return None: kopf stores nothing of ours in status; progress/diff-base live in
annotations under vlmops.dev.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

import kopf
from pydantic import ValidationError

from . import GROUP, VERSION
from .api.kinds import KINDS
from .builders import BuildContext, parse_spec, references
from vlmops_contract.labels import LABEL_KIND, LABEL_NAME
from .builders.inputs import is_done
from .kube import Kube
from . import results
from .reconciler import reconcile

log = logging.getLogger("vlmops.handlers")
_MANAGED = {"app.kubernetes.io/managed-by": "vlmops"}


class Operator:
    """Holds the shared state the handlers need (API client, defaults, per-object locks)."""

    def __init__(self, ctx: BuildContext, kube: Kube | None = None, progress_interval: float = 30.0):
        self.ctx = ctx
        self.progress_interval = progress_interval
        self._kube = kube
        self._locks: dict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube()
        return self._kube

    def _lock(self, kind: str, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[(kind, namespace, name)]

    def reconcile(self, kind: str, namespace: str, name: str) -> None:
        # Parent and child events may arrive on different kopf workers: serialize per object so
        # two passes never race on create or status patch.
        with self._lock(kind, namespace, name):
            reconcile(self.kube, kind, namespace, name, self.ctx)

    def mirror_progress(self, namespace: str, name: str, spec: dict[str, Any], status: dict[str, Any]) -> None:
        from . import progress
        from .api.training_stage import VLMTrainingStageSpec

        try:
            out = VLMTrainingStageSpec.model_validate(spec).output_uri()
        except ValidationError:
            return
        doc = progress.read(out)
        patch = progress.status_patch(doc, dict(status)) if doc else None
        if patch:
            with self._lock("VLMTrainingStage", namespace, name):
                self.kube.patch_cr_status("VLMTrainingStage", namespace, name, patch)

    def dependents(self, kind: str, namespace: str, name: str) -> list[tuple[str, str]]:
        found = []
        for other in KINDS.values():
            for obj in self.kube.list_crs(other.kind, namespace):
                try:
                    spec = parse_spec(obj)
                except ValidationError:
                    continue
                if (kind, name) in references(other.kind, spec):
                    found.append((other.kind, obj["metadata"]["name"]))
        return found


def register(op: Operator, registry: kopf.OperatorRegistry | None = None) -> kopf.OperatorRegistry:
    registry = registry or kopf.get_default_registry()

    for kind in KINDS.values():
        def own(namespace: str, name: str, _kind: str = kind.kind, **_: Any) -> None:
            op.reconcile(_kind, namespace, name)

        for decorator in (kopf.on.create, kopf.on.resume):
            decorator(GROUP, VERSION, kind.plural, id=f"reconcile-{kind.short}", registry=registry)(own)
        kopf.on.update(GROUP, VERSION, kind.plural, field="spec", id=f"reconcile-{kind.short}",
                       registry=registry)(own)

        def inputs_changed(event: dict[str, Any], body: Any, namespace: str, name: str, _kind: str = kind.kind,
                           **_: Any) -> None:
            if event.get("type") == "DELETED":
                results.forget(_kind, namespace, name)
                return
            if event.get("type") not in ("ADDED", "MODIFIED", None):
                return
            # Dependents only ever act on a done input (Ready/Succeeded for its generation); any
            # other change of an input (progress, our own status patches) cannot unblock them.
            if not is_done(dict(body)):
                return
            for dep_kind, dep_name in op.dependents(_kind, namespace, name):
                op.reconcile(dep_kind, namespace, dep_name)

        kopf.on.event(GROUP, VERSION, kind.plural, id=f"dependents-{kind.short}", registry=registry)(inputs_changed)

    def child_changed(event: dict[str, Any], body: Any, namespace: str, **_: Any) -> None:
        labels = body.get("metadata", {}).get("labels") or {}
        parent_kind, parent = labels.get(LABEL_KIND), labels.get(LABEL_NAME)
        if parent_kind in KINDS and parent and event.get("type") != "DELETED":
            op.reconcile(parent_kind, namespace, parent)

    def training_progress(status: dict[str, Any], spec: dict[str, Any], namespace: str, name: str,
                          **_: Any) -> None:
        op.mirror_progress(namespace, name, spec, status)

    kopf.timer(GROUP, VERSION, KINDS["VLMTrainingStage"].plural, interval=op.progress_interval, initial_delay=5,
               id="training-progress", registry=registry,
               when=lambda status, **_: (status or {}).get("phase") == "Running")(training_progress)

    kopf.on.event("batch", "v1", "jobs", labels=_MANAGED, id="child-job", registry=registry)(child_changed)
    kopf.on.event("kubeflow.org", "v1", "pytorchjobs", labels=_MANAGED, id="child-pytorchjob",
                  registry=registry)(child_changed)
    return registry


def configure(settings: kopf.OperatorSettings, watch_timeout: float | None = None) -> None:
    """Operator-wide kopf settings (called from the startup handler)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    settings.posting.enabled = False  # we post our own, meaningful Events on transitions
    settings.peering.standalone = True
    settings.execution.max_workers = 8
    if watch_timeout:
        settings.watching.server_timeout = watch_timeout
        settings.watching.client_timeout = watch_timeout + 5
