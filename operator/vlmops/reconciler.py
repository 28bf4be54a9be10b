"""Reconcile = observe -> decide -> act, independent of kopf.

- `observe` reads the CR, its inputs, its children and (only when a result or a failure must be
  read) their pods into a `Snapshot`;
- `decide` is a pure function of the snapshot: the desired status plus the actions;
- `act` performs them: create the next missing child (deterministic name, so a retry or a restarted
  operator finds it instead of duplicating it), adopt orphans, patch status only when it changed
  (a settled pipeline causes no writes), post Events on transitions.
Level-based and idempotent: every pass recomputes everything from what it reads.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from vlmops_contract.labels import LABEL_GENERATION, LABEL_KIND, LABEL_NAME, LABEL_STEP, label_value
from vlmops_contract.layouts import MANIFEST, join

from . import childstate, conditions, manifest_stamp, mergepatch, results, status_metrics
from .api.errors import format_validation_error
from .api.kind import name_problem
from .builders import BuildContext, Plan, Step
from .builders.uris import relative_locations, resolve_uris
from .kinds import KINDS, Kind
from .kubeapi import CreateRefused, KubeAPI, KubeReader
from .metrics import CHILD_FAILURES, RECONCILE_ERRORS, RECONCILE_TIME, RECONCILE_TOTAL

log = logging.getLogger("vlmops.reconciler")
Event = tuple[str, str, str]  # (type, reason, message)


@dataclass
class Snapshot:
    """What one pass read. `problem`: a spec problem found before building (nothing else is read)."""

    obj: dict[str, Any]  # the CR, relative locations resolved
    at: str
    spec: Any = None
    problem: str | None = None
    problem_reason: str = "InvalidSpec"  # or PolicyViolation
    plan: Plan | None = None
    children: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # name -> object; None: absent
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # step -> its pods
    ttl: int | None = None  # ttlSecondsAfterFinished for succeeded children (chart jobs.ttlSecondsAfterFinished)

    @property
    def old_status(self) -> dict[str, Any]:
        return self.obj.get("status") or {}

    @property
    def recorded(self) -> dict[str, dict[str, Any]]:
        """Children as the last pass recorded them in status, by name."""
        return {c.get("name"): c for c in self.old_status.get("children") or []}


@dataclass
class Decision:
    status: dict[str, Any]
    create: list[Step] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) of older-generation children
    expire: list[tuple[str, str]] = field(default_factory=list)  # (kind, name): results in status, give a TTL
    reap: list[tuple[str, str]] = field(default_factory=list)  # (kind, name): no TTL field, TTL passed: delete
    adopt: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    newly_failed: list[str] = field(default_factory=list)  # kinds of children that just failed (metrics)
    stamp: tuple[str, str] | None = None  # (the CR's own manifest, the image its final pod ran): act records it


@dataclass
class Outcome:
    patched: bool = False
    created: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def reconcile(kube: KubeAPI, kind: str, namespace: str, name: str, ctx: BuildContext) -> Outcome:
    started = time.perf_counter()
    try:
        snap = observe(kube, KINDS[kind], namespace, name, ctx)
        if snap is None:
            status_metrics.forget(kind, namespace, name)
            out = Outcome()
        else:
            out = act(kube, snap, decide(snap, KINDS[kind]))
        RECONCILE_TOTAL.labels(controller=kind, result="success").inc()
        return out
    except Exception:
        RECONCILE_TOTAL.labels(controller=kind, result="error").inc()
        RECONCILE_ERRORS.labels(controller=kind).inc()
        raise
    finally:
        RECONCILE_TIME.labels(controller=kind).observe(time.perf_counter() - started)


# -- observe ------------------------------------------------------------------------------------

def observe(kube: KubeReader, kind: Kind, namespace: str, name: str, ctx: BuildContext) -> Snapshot | None:
    """Everything `decide` needs, read from the API; None when the CR is gone or going."""
    obj = kube.get_cr(kind.kind, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    snap = Snapshot(obj=obj, at=conditions.now(), ttl=ctx.ttl_seconds_after_finished)
    if problem := name_problem(name):  # stored before the CRD had the rule
        snap.problem = problem
        return snap
    try:
        snap.spec = kind.spec.model_validate(obj.get("spec") or {})
    except ValidationError as e:
        snap.problem = format_validation_error(e)
        return snap
    relative = list(relative_locations(obj.get("spec") or {}))
    if relative and not ctx.storage_prefix:
        snap.problem = "; ".join(f"{path}: relative location {value!r} needs a storage prefix (chart value "
                                 "jobs.storage.prefix) or an absolute URI" for path, value in relative)
        return snap
    if relative:
        snap.obj = {**obj, "spec": resolve_uris(obj["spec"], ctx.storage_prefix)}
        snap.spec = kind.spec.model_validate(snap.obj["spec"])
    violations = ctx.policy.violations(snap.obj.get("spec") or {}, kind.sizes(snap.spec))
    if violations:
        snap.problem, snap.problem_reason = "; ".join(violations), "PolicyViolation"
        return snap
    for c in _older_generations(snap):  # still running? then they are stopped before anything new starts
        snap.children[c["name"]] = kube.get_child(c["kind"], namespace, c["name"])
    inputs = {ref: kube.get_cr(ref[0], namespace, ref[1]) for ref in kind.references(snap.spec)}
    snap.plan = kind.build(snap.obj, snap.spec, inputs, ctx)
    _read_children(kube, snap)
    return snap


def _read_children(kube: KubeReader, snap: Snapshot) -> None:
    """Children in step order up to the first one not (yet) succeeded; pods where a step's result
    or failure has to be read (a child that just succeeded, or one that failed)."""
    ns, recorded = snap.obj["metadata"]["namespace"], snap.recorded
    if snap.plan.waiting_for or snap.plan.invalid:
        wanted = [(c["kind"], c["name"], c.get("step", "")) for c in _this_generation(snap)
                  if c.get("phase") != "Succeeded"]
    else:
        wanted = [(s.kind, s.child_name, s.name) for s in snap.plan.steps]
    for child_kind, name, step in wanted:
        child = snap.children[name] = kube.get_child(child_kind, ns, name)
        was = (recorded.get(name) or {}).get("phase")
        phase = childstate.state(child).phase if child else ("Succeeded" if was == "Succeeded" else None)
        if child and (phase == "Failed" or (phase == "Succeeded" and was != "Succeeded")):
            snap.pods[step] = kube.list_pods(ns, _step_selector(snap.obj, step))
        if phase != "Succeeded":
            break


def _step_selector(obj: dict[str, Any], step: str) -> dict[str, str]:
    """The labels on every pod of the step's child."""
    meta = obj["metadata"]
    return {LABEL_KIND: obj["kind"], LABEL_NAME: label_value(meta["name"]), LABEL_STEP: step,
            LABEL_GENERATION: str(meta.get("generation", 1))}


def _recorded_by_generation(snap: Snapshot, current: bool) -> list[dict[str, Any]]:
    """Children recorded in status for this generation (current) or an older one; child names end
    in `-g<generation>` (builders.child_name)."""
    gen = snap.obj["metadata"].get("generation")
    return [dict(c) for c in snap.old_status.get("children") or []
            if str(c.get("name", "")).endswith(f"-g{gen}") == current]


def _older_generations(snap: Snapshot) -> list[dict[str, Any]]:
    """Children recorded for an older generation that were not finished when last seen."""
    return [c for c in _recorded_by_generation(snap, current=False) if c.get("phase") not in ("Succeeded", "Failed")]


def _this_generation(snap: Snapshot) -> list[dict[str, Any]]:
    return _recorded_by_generation(snap, current=True)


# -- decide -------------------------------------------------------------------------------------

def decide(snap: Snapshot, kind: Kind) -> Decision:
    """The desired status and the actions to get there. Pure: reads only the snapshot."""
    d = Decision(status=copy.deepcopy(snap.old_status))
    state = _StateSetter(d, kind.done_condition, snap.obj["metadata"].get("generation"), snap.at)
    if snap.problem:
        return state("Invalid", snap.problem_reason, snap.problem)
    stopping = [c for c in _older_generations(snap) if (child := snap.children.get(c["name"])) is not None
                and childstate.state(child).phase not in ("Succeeded", "Failed")]
    if stopping:
        # A spec change supersedes the running generation: its children are deleted, and the new
        # generation starts only once they are gone (two generations never write one output).
        d.delete = [(c["kind"], c["name"]) for c in stopping
                    if not snap.children[c["name"]]["metadata"].get("deletionTimestamp")]
        return state("Running", "StoppingOldGeneration", "stopping " + ", ".join(
            f"{c['kind']} {c['name']}" for c in stopping) + " (an older generation) before this one starts")
    plan = snap.plan
    if plan.waiting_for or plan.invalid:
        # Inputs are needed to create children, not to follow them: an input deleted (GitOps
        # prune) after this generation started must neither hide a running child's outcome nor
        # turn a finished CR back into Pending.
        followed = _follow_started(snap, kind, d, state)
        if followed is not None:
            return followed
        if plan.waiting_for:
            return state("Waiting", "WaitingForInput", "waiting for " + "; ".join(plan.waiting_for))
        # a spec problem visible only against an input: stall before asking for anything
        return state("Invalid", "InvalidSpec", "; ".join(plan.invalid))
    return _walk_steps(snap, kind, d, state)


def _walk_steps(snap: Snapshot, kind: Kind, d: Decision, state: "_StateSetter") -> Decision:
    status, recorded, steps = d.status, snap.recorded, snap.plan.steps
    children: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        child = snap.children.get(step.child_name)
        was = recorded.get(step.child_name) or {}
        if child is None and was.get("phase") == "Succeeded":
            # Its result is already in status: a child deleted after success (TTL, cleanup by
            # hand) must not run again. (A deleted *failed* child is recreated: that is a retry.)
            children.append(dict(was))
            continue
        if child is None:
            d.create.append(step)
            d.events.append(("Normal", "Created", f"created {step.kind} {step.child_name} ({step.name})"))
            child = step.manifest  # just created: no status yet
        elif (want := step.manifest["metadata"].get("ownerReferences")) and not child["metadata"].get(
                "ownerReferences"):
            d.adopt.append((child, want))
        st = childstate.state(child)
        children.append({"apiVersion": step.manifest["apiVersion"], "kind": step.kind, "name": step.child_name,
                         "step": step.name, "phase": st.phase})
        if st.total and step.name in kind.shard_progress_steps:
            status["progress"] = {"shardsCompleted": st.completed or 0, "shardsTotal": st.total}
        if kind.records_job:
            status["job"] = step.child_name
        status.setdefault("startTime", snap.at)
        if st.phase == "Succeeded":
            # Read the result once, when the step turns Succeeded; it then lives in status, so a
            # child garbage-collected later loses nothing.
            if was.get("phase") != "Succeeded":
                results.copy_into(status, results.from_pods(snap.pods.get(step.name) or []), kind.result_keys)
                _record_image(snap, kind, d, status, step.name)
            elif snap.ttl is not None and step.kind in childstate.TTL_PATCH:
                if childstate.ttl_of(child) is None:
                    # its result was recorded by an earlier pass (status written): now it may go
                    d.expire.append((step.kind, step.child_name))
            elif childstate.reap_due(child, was.get("phase"), snap.ttl, snap.at):
                # no TTL field (TrainJob): the operator deletes it as the TTL controller would
                d.reap.append((step.kind, step.child_name))
            continue
        status["children"] = children
        if st.phase == "Failed":
            return _failed(snap, d, state, step.kind, step.child_name, step.name, st, was.get("phase"))
        what = "suspended (waiting for quota)" if st.phase == "Suspended" else st.phase.lower()
        return state("Running", "Running", f"{step.name} ({i + 1}/{len(steps)}): {step.kind} "
                     f"{step.child_name} {what}")
    status["children"] = children
    return _finished(snap, kind, d, state, len(steps))


def _follow_started(snap: Snapshot, kind: Kind, d: Decision, state: "_StateSetter") -> Decision | None:
    """Status from the children already recorded for this generation, creating none; None when
    nothing was started (or the next step needs the missing input)."""
    recorded = _this_generation(snap)
    if not recorded:
        return None
    old = snap.old_status
    if old.get("observedGeneration") == snap.obj["metadata"].get("generation") and \
            old.get("phase") in ("Ready", "Succeeded"):
        d.status = copy.deepcopy(old)  # finished: losing an input afterwards changes nothing
        return d
    for c in recorded:
        if c.get("phase") == "Succeeded":
            continue
        child = snap.children.get(c["name"])
        if child is None:
            return None
        st = childstate.state(child)
        was, c["phase"] = c.get("phase"), st.phase
        d.status["children"] = recorded
        step = c.get("step", "")
        if st.phase == "Failed":
            return _failed(snap, d, state, c["kind"], c["name"], step, st, was)
        if st.phase != "Succeeded":
            return state("Running", "Running", f"{step}: {c['kind']} {c['name']} "
                         f"{st.phase.lower()} (an input is gone; following the started child)")
        results.copy_into(d.status, results.from_pods(snap.pods.get(step) or []), kind.result_keys)
        _record_image(snap, kind, d, d.status, step)
    if recorded[-1].get("step") != kind.final_step:
        return None
    d.status["children"] = recorded
    return _finished(snap, kind, d, state, len(recorded))


def _record_image(snap: Snapshot, kind: Kind, d: Decision, status: dict[str, Any], step: str) -> None:
    """The final step's pod image into `status.output.image`, and (act) into the manifest it wrote
    when that is the CR's own output manifest (never a location a result line names elsewhere)."""
    if step != kind.final_step:
        return
    image = results.image_id(snap.pods.get(step) or [])
    out = status.get("output")
    if not image or not isinstance(out, dict):
        return
    out["image"] = image
    own = join(kind.outputs(snap.spec)["output"]["uri"], MANIFEST)
    if out.get("manifest") == own:
        d.stamp = (own, image)


def _failed(snap: Snapshot, d: Decision, state: "_StateSetter", child_kind: str, name: str, step: str,
            st: childstate.ChildState, was: str | None) -> Decision:
    if was != "Failed":
        d.newly_failed.append(child_kind)
    d.status.setdefault("completionTime", snap.at)
    msg = f"{child_kind} {name} ({step}) failed: {st.reason}"
    if st.message:
        msg += f": {st.message}"
    pods = snap.pods.get(step) or []
    res = results.from_pods(pods)
    if res and res.get("error"):
        msg += f" ({res['error']})"
    elif line := results.failure_line(pods):
        msg += f" ({line})"  # e.g. the job's "error: <field>: ..." line (exit code 2)
    return state("Failed", "ChildFailed", msg)


def _finished(snap: Snapshot, kind: Kind, d: Decision, state: "_StateSetter", steps: int) -> Decision:
    """Every step succeeded: derived fields, then Done (or Failed, e.g. eval thresholds not met)."""
    d.status.setdefault("completionTime", snap.at)
    failure = kind.finish(snap.spec, d.status)
    if failure:
        return state("Failed", *failure)
    return state("Done", kind.done_phase, f"{steps} step(s) completed")


class _StateSetter:
    """Sets phase and conditions on the decision's status; a changed phase or reason is an Event."""

    def __init__(self, d: Decision, done_condition: str, gen: int | None, at: str):
        self.d, self.done, self.gen, self.at = d, done_condition, gen, at

    def __call__(self, state: str, reason: str, message: str) -> Decision:
        old = self.d.status
        self.d.status = conditions.with_state(old, done_condition=self.done, state=state, reason=reason,
                                              message=message, generation=self.gen, at=self.at)
        if self.d.status["phase"] != old.get("phase") or (conditions.get(old, "Ready") or {}).get("reason") != reason:
            self.d.events.append(("Warning" if state in ("Failed", "Invalid") else "Normal", reason, message))
        return self.d


# -- act ----------------------------------------------------------------------------------------

def act(kube: KubeAPI, snap: Snapshot, d: Decision) -> Outcome:
    meta = snap.obj["metadata"]
    out = Outcome(events=d.events)
    for step in d.create:
        try:
            for extra in step.extra:
                kube.create_child(extra)
            kube.create_child(step.manifest)
        except CreateRefused as e:
            return _stall_on_refusal(kube, snap, step, e)
        out.created.append(step.child_name)
        log.info("created %s %s/%s", step.kind, meta["namespace"], step.child_name)
    for child_kind, name in d.delete:
        kube.delete_child(child_kind, meta["namespace"], name)
        log.info("deleted %s %s/%s (an older generation)", child_kind, meta["namespace"], name)
    for child, owner_refs in d.adopt:
        kube.adopt_child(child, owner_refs)
    for child_kind, name in d.expire:
        assert snap.ttl is not None
        kube.expire_child(child_kind, meta["namespace"], name, snap.ttl)
    for child_kind, name in d.reap:
        kube.delete_child(child_kind, meta["namespace"], name)
        log.info("deleted %s %s/%s (finished over %s s ago, result recorded)", child_kind, meta["namespace"], name, snap.ttl)
    for child_kind in d.newly_failed:
        CHILD_FAILURES.labels(kind=child_kind).inc()
    if d.stamp:  # before the status patch: status.output.digest is the manifest as stored
        digest = manifest_stamp.stamp(*d.stamp)
        if digest and isinstance(d.status.get("output"), dict):
            d.status["output"]["digest"] = digest
    old = snap.old_status
    if status_changed(old, d.status):
        kube.patch_cr_status(snap.obj["kind"], meta["namespace"], meta["name"], mergepatch.diff(old, d.status))
        out.patched = True
        for type_, reason, message in d.events:
            kube.post_event(snap.obj, type_, reason, message, snap.at)
    status_metrics.observe(snap.obj, d.status)
    return out


def _stall_on_refusal(kube: KubeAPI, snap: Snapshot, step: Step, e: CreateRefused) -> Outcome:
    """A create the API server refused (RBAC, owner-reference enforcement, a policy): Stalled with the
    server's message and a Warning Event, instead of a silent retry. The resync tries again."""
    meta = snap.obj["metadata"]
    message = (f"creating {step.kind} {step.child_name} ({step.name}) was refused by the API server "
               f"(HTTP {e.status}): {e}")
    status = conditions.with_state(snap.old_status, done_condition=KINDS[snap.obj["kind"]].done_condition,
                                   state="Invalid", reason="CreateRefused", message=message,
                                   generation=meta.get("generation"), at=snap.at)
    out = Outcome(events=[("Warning", "CreateRefused", message)])
    log.warning("%s %s/%s: %s", snap.obj["kind"], meta["namespace"], meta["name"], message)
    if status_changed(snap.old_status, status):
        kube.patch_cr_status(snap.obj["kind"], meta["namespace"], meta["name"], mergepatch.diff(snap.old_status, status))
        kube.post_event(snap.obj, "Warning", "CreateRefused", message, snap.at)
        out.patched = True
    status_metrics.observe(snap.obj, status)
    return out


def status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Statuses compare without timestamps that would otherwise change on every pass."""
    return _without_times(old) != _without_times(new)


def _without_times(s: dict[str, Any]) -> dict[str, Any]:
    s = copy.deepcopy(s)
    for c in s.get("conditions") or []:
        c.pop("lastTransitionTime", None)
    return {k: v for k, v in s.items() if v is not None}
