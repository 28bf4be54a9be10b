"""kopf wiring: which events trigger `reconciler.reconcile`, for every kind in `kinds.KINDS`.

The decisions live in the reconciler; here: per-object locks, finding dependents, timers.
- each kind: on.create / on.resume / on.update(spec) reconcile the object itself (retried after
  `retry_backoff` when they fail), and a resync timer reconciles every CR not done yet;
- child Jobs / PyTorchJobs / TrainJobs (our labels): any event, deletion included, reconciles the parent;
- each kind's events reconcile the CRs that reference it (so a pipeline applied at once
  starts each step as soon as its input turns Ready).
Handlers return None: kopf stores nothing of ours in status; progress/diff-base live in
annotations under vlmops.dev.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any, Callable

import kopf
from pydantic import ValidationError
from vlmops_contract.api import GROUP, VERSION
from vlmops_contract.labels import MANAGED_BY, MANAGED_BY_LABEL, parent_of

from . import childstate, conditions, progress, status_metrics
from .builders import BuildContext
from .builders.inputs import is_done
from .kinds import KINDS, Kind
from .kube import Kube
from .liveness import ReconcileClock
from .reconciler import reconcile

log = logging.getLogger("vlmops.handlers")
_MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}


class Operator:
    """Holds the shared state the handlers need (API client, defaults, per-object locks)."""

    def __init__(self, ctx: BuildContext, kube: Kube | None = None, progress_interval: float = 30.0,
                 resync_interval: float = 60.0, api_timeout: float = 30.0, retry_backoff: float = 10.0,
                 stall_after: float = 300.0):
        self.ctx = ctx
        self.progress_interval = progress_interval
        self.resync_interval = resync_interval  # every unfinished CR is reconciled at least this often
        self.api_timeout = api_timeout
        self.retry_backoff = retry_backoff  # a failed create/update handler is retried after this
        self.clock = ReconcileClock(stall_after)
        self._kube = kube
        self._locks: dict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(timeout=self.api_timeout)
        return self._kube

    def _lock(self, kind: str, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[(kind, namespace, name)]

    def reconcile(self, kind: str, namespace: str, name: str) -> None:
        # Parent and child events may arrive on different kopf workers: serialize per object so
        # two passes never race on create or status patch.
        token = self.clock.start()
        try:
            with self._lock(kind, namespace, name):
                reconcile(self.kube, kind, namespace, name, self.ctx)
        finally:
            self.clock.finish(token)

    def needs_resync(self, body: dict[str, Any], done_condition: str) -> bool:
        return not is_done(body, done_condition) or childstate.awaits_reaping(
            body.get("status") or {}, self.ctx.ttl_seconds_after_finished, conditions.now(),
            margin=int(3 * self.resync_interval))

    def mirror_progress(self, kind: str, namespace: str, name: str, spec: dict[str, Any],
                        status: dict[str, Any]) -> None:
        try:
            out = KINDS[kind].outputs(KINDS[kind].spec.model_validate(spec))["output"]["uri"]
        except ValidationError:
            return
        if not self.ctx.policy.may_read(out):  # never fetch a CR-chosen http:// or file:// address (SSRF)
            return
        doc = progress.read(out)
        patch = progress.status_patch(doc, dict(status)) if doc else None
        if patch:
            with self._lock(kind, namespace, name):
                self.kube.patch_cr_status(kind, namespace, name, patch)



def references_index(kind: Kind) -> Callable[..., dict[tuple[str, str, str], tuple[str, str]]]:
    """A kopf index of what each CR of `kind` reads: (namespace, input kind, input name) -> (kind, name).
    Kept current from the watch stream, so finding an input's dependents lists nothing (the cost of
    an event does not grow with the number of CRs)."""
    def index(namespace: str, name: str, spec: Any, **_: Any) -> dict[tuple[str, str, str], tuple[str, str]]:
        try:
            refs = kind.references(kind.spec.model_validate(dict(spec or {})))
        except ValidationError:
            return {}
        return {(namespace, ref_kind, ref_name): (kind.kind, name) for ref_kind, ref_name in refs}

    return index


def dependents(indices: dict[str, Any], kind: str, namespace: str, name: str) -> list[tuple[str, str]]:
    """(kind, name) of every CR that reads `kind/name`, from the reference indices."""
    key = (namespace, kind, name)
    return sorted({dep for index in indices.values() if key in index for dep in index[key]})


def _index_id(kind: Kind) -> str:
    return f"references_{kind.short}"  # also the handlers' keyword argument (an identifier)


def register(op: Operator, registry: kopf.OperatorRegistry | None = None) -> kopf.OperatorRegistry:
    registry = registry or kopf.get_default_registry()

    for kind in KINDS.values():
        def own(namespace: str, name: str, _kind: str = kind.kind, **_: Any) -> None:
            op.reconcile(_kind, namespace, name)

        for decorator in (kopf.on.create, kopf.on.resume):
            decorator(GROUP, VERSION, kind.plural, id=f"reconcile-{kind.short}", registry=registry,
                      backoff=op.retry_backoff)(own)
        kopf.on.update(GROUP, VERSION, kind.plural, field="spec", id=f"reconcile-{kind.short}",
                       registry=registry, backoff=op.retry_backoff)(own)

        # Level-triggered for real: a lost event, a failed status patch or a child deleted by hand is
        # noticed within one interval; a pass that changes nothing writes nothing. A done CR is still
        # resynced while a succeeded child without a TTL field (TrainJob) waits for its TTL.
        kopf.timer(GROUP, VERSION, kind.plural, interval=op.resync_interval, initial_delay=op.resync_interval,
                   id=f"resync-{kind.short}", registry=registry,
                   when=lambda body, _done=kind.done_condition, **_: op.needs_resync(dict(body), _done))(own)

        kopf.index(GROUP, VERSION, kind.plural, id=_index_id(kind), registry=registry)(references_index(kind))

        def inputs_changed(event: dict[str, Any], body: Any, namespace: str, name: str, _kind: str = kind.kind,
                           **kwargs: Any) -> None:
            if event.get("type") == "DELETED":
                status_metrics.forget(_kind, namespace, name)
                return
            if event.get("type") not in ("ADDED", "MODIFIED", None):
                return
            # Dependents only ever act on a done input (Ready/Succeeded for its generation); any
            # other change of an input (progress, our own status patches) cannot unblock them.
            if not is_done(dict(body), KINDS[_kind].done_condition):
                return
            indices = {k.kind: kwargs[_index_id(k)] for k in KINDS.values()}
            for dep_kind, dep_name in dependents(indices, _kind, namespace, name):
                op.reconcile(dep_kind, namespace, dep_name)

        kopf.on.event(GROUP, VERSION, kind.plural, id=f"dependents-{kind.short}", registry=registry)(inputs_changed)

    def child_changed(event: dict[str, Any], body: Any, namespace: str, **_: Any) -> None:
        # The annotation has the exact name (the name label may be a shortened one).
        parent = parent_of(body.get("metadata") or {})
        # DELETED too: a child removed by hand is recreated (running) or retried (failed) now.
        if parent and parent[0] in KINDS:
            op.reconcile(parent[0], namespace, parent[1])

    for kind in (k for k in KINDS.values() if k.mirrors_progress):
        def mirror(status: dict[str, Any], spec: dict[str, Any], namespace: str, name: str, _kind: str = kind.kind,
                   **_: Any) -> None:
            op.mirror_progress(_kind, namespace, name, spec, status)

        kopf.timer(GROUP, VERSION, kind.plural, interval=op.progress_interval, initial_delay=5,
                   id=f"progress-{kind.short}", registry=registry,
                   when=lambda status, **_: (status or {}).get("phase") == "Running")(mirror)

    kopf.on.event("batch", "v1", "jobs", labels=_MANAGED, id="child-job", registry=registry)(child_changed)
    kopf.on.event("kubeflow.org", "v1", "pytorchjobs", labels=_MANAGED, id="child-pytorchjob",
                  registry=registry)(child_changed)
    # (without the Trainer v2 CRDs installed, kopf only logs that trainjobs cannot be watched yet)
    kopf.on.event("trainer.kubeflow.org", "v1alpha1", "trainjobs", labels=_MANAGED, id="child-trainjob",
                  registry=registry)(child_changed)
    return registry


def configure(settings: kopf.OperatorSettings, watch_timeout: float | None = None,
              api_timeout: float = 30.0) -> None:
    """Operator-wide kopf settings (called from the startup handler)."""
    settings.networking.request_timeout = api_timeout  # kopf's own calls (patches, lists) are bounded too
    settings.networking.connect_timeout = min(api_timeout, 10.0)
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
