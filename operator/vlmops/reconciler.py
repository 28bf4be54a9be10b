"""The reconcile loop body, independent of kopf: read, adopt, create-if-absent, patch status.

`reconcile()` is level-based and idempotent: it recomputes the desired state from the CR, its
inputs and its children every time, creates the next missing child (deterministic name, so a
retry or a restarted operator finds it instead of duplicating it), and patches status only
when something changed, so a settled pipeline causes no writes at all.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import childstate, conditions, results
from .api.errors import format_validation_error
from .api.kinds import KINDS
from .builders import BuildContext, Plan, build, parse_spec, references
from .builders.uris import relative_locations, resolve_uris
from vlmops_contract.labels import LABEL_GENERATION, LABEL_KIND, LABEL_NAME, LABEL_STEP
from .kube import Kube
from .metrics import CHILD_FAILURES, RECONCILE_ERRORS, RECONCILE_TIME, RECONCILE_TOTAL

log = logging.getLogger("vlmops.reconciler")


@dataclass
class Outcome:
    patched: bool = False
    created: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def reconcile(kube: Kube, kind: str, namespace: str, name: str, ctx: BuildContext) -> Outcome:
    started = time.perf_counter()
    try:
        out = _reconcile(kube, kind, namespace, name, ctx)
        RECONCILE_TOTAL.labels(controller=kind, result="success").inc()
        return out
    except Exception:
        RECONCILE_TOTAL.labels(controller=kind, result="error").inc()
        RECONCILE_ERRORS.labels(controller=kind).inc()
        raise
    finally:
        RECONCILE_TIME.labels(controller=kind).observe(time.perf_counter() - started)


def _reconcile(kube: Kube, kind: str, namespace: str, name: str, ctx: BuildContext) -> Outcome:
    obj = kube.get_cr(kind, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        results.forget(kind, namespace, name)
        return Outcome()
    old = obj.get("status") or {}
    new, outcome = desired_status(kube, obj, ctx)
    if _differs(old, new):
        patch = _merge_patch(old, new)
        kube.patch_cr_status(kind, namespace, name, patch)
        outcome.patched = True
        at = conditions.now()
        for type_, reason, message in outcome.events:
            kube.post_event(obj, type_, reason, message, at)
    results.export_metrics(obj, new)
    return outcome


def desired_status(kube: Kube, obj: dict[str, Any], ctx: BuildContext) -> tuple[dict[str, Any], Outcome]:
    kind_name = obj["kind"]
    kind = KINDS[kind_name]
    meta = obj["metadata"]
    ns, gen = meta["namespace"], meta.get("generation")
    old = obj.get("status") or {}
    status = copy.deepcopy(old)
    out = Outcome()
    at = conditions.now()
    state = _StateSetter(status, kind.done_condition, gen, at, out)

    try:
        spec = parse_spec(obj)
    except ValidationError as e:
        return state("Invalid", "InvalidSpec", format_validation_error(e)), out

    relative = list(relative_locations(obj.get("spec") or {}))
    if relative and not ctx.storage_prefix:
        return state("Invalid", "InvalidSpec", "; ".join(
            f"{path}: relative location {value!r} needs a storage prefix (chart value jobs.storage.prefix) "
            "or an absolute URI" for path, value in relative)), out
    if relative:
        obj = {**obj, "spec": resolve_uris(obj["spec"], ctx.storage_prefix)}
    inputs = {ref: kube.get_cr(ref[0], ns, ref[1]) for ref in references(kind_name, spec)}
    plan: Plan = build(obj, inputs, ctx)
    if plan.waiting_for or plan.invalid:
        # Inputs are needed to create children, not to follow them: an input deleted (GitOps
        # prune) after this generation started must neither hide a running child's outcome nor
        # turn a finished CR back into Pending.
        tracked = _track_started(kube, obj, spec, status, old, state, out)
        if tracked is not None:
            return tracked, out
        if plan.waiting_for:
            return state("Waiting", "WaitingForInput", "waiting for " + "; ".join(plan.waiting_for)), out
        # a spec problem visible only against an input: stall before asking for anything
        return state("Invalid", "InvalidSpec", "; ".join(plan.invalid)), out

    children: list[dict[str, Any]] = []
    old_children = {c.get("name"): c for c in old.get("children") or []}
    for i, step in enumerate(plan.steps):
        child = kube.get_child(step.kind, ns, step.child_name)
        recorded = old_children.get(step.child_name) or {}
        if child is None and recorded.get("phase") == "Succeeded":
            # Its result is already in status: a child deleted after success (TTL, cleanup by
            # hand) must not run again. (A deleted *failed* child is recreated: that is a retry.)
            children.append(dict(recorded))
            continue
        if child is None:
            for extra in step.extra:
                kube.create_child(extra)
            child = kube.create_child(step.manifest)
            out.created.append(step.child_name)
            out.events.append(("Normal", "Created", f"created {step.kind} {step.child_name} ({step.name})"))
            log.info("created %s %s/%s", step.kind, ns, step.child_name)
        else:
            _adopt_if_orphaned(kube, child, step.manifest)
        st = childstate.state(child)
        children.append({"apiVersion": step.manifest["apiVersion"], "kind": step.kind, "name": step.child_name,
                         "step": step.name, "phase": st.phase})
        if st.total and step.name in ("retrieve", "lengths", "write"):
            status["progress"] = {"shardsCompleted": st.completed or 0, "shardsTotal": st.total}
        if kind_name == "VLMTrainingStage":
            status["job"] = step.child_name
        status.setdefault("startTime", at)
        if st.phase == "Succeeded":
            # Read the result once, when the step turns Succeeded; it then lives in status, so a
            # child garbage-collected later loses nothing.
            if (old_children.get(step.child_name) or {}).get("phase") != "Succeeded":
                res = _read_result(kube, obj, step.name)
                results.apply(kind_name, spec, status, step.name, res)
            continue
        status["children"] = children
        if st.phase == "Failed":
            if (old_children.get(step.child_name) or {}).get("phase") != "Failed":
                CHILD_FAILURES.labels(kind=step.kind).inc()
            status.setdefault("completionTime", at)
            return state("Failed", "ChildFailed", _failure_message(kube, obj, step.kind, step.child_name,
                                                                   step.name, st)), out
        what = "suspended (waiting for quota)" if st.phase == "Suspended" else st.phase.lower()
        return state("Running", "Running", f"{step.name} ({i + 1}/{len(plan.steps)}): {step.kind} "
                     f"{step.child_name} {what}"), out

    status["children"] = children
    return _finished(kind_name, spec, status, state, len(plan.steps)), out


# The step whose success completes each kind (the builders' last step).
FINAL_STEP = {"BalancedCorpus": "balance", "PackedDataset": "finalize", "VLMTrainingStage": "train",
              "EvalSuite": "eval"}


def _track_started(kube: Kube, obj: dict[str, Any], spec: Any, status: dict[str, Any], old: dict[str, Any],
                   state: "_StateSetter", out: Outcome) -> dict[str, Any] | None:
    """Status from the children already recorded for this generation, without creating any; None
    when nothing was started (or the next step needs the missing input)."""
    meta = obj["metadata"]
    gen = meta.get("generation")
    recorded = [dict(c) for c in old.get("children") or [] if str(c.get("name", "")).endswith(f"-g{gen}")]
    if not recorded:
        return None
    if old.get("observedGeneration") == gen and old.get("phase") in ("Ready", "Succeeded"):
        return copy.deepcopy(old)  # finished: losing an input afterwards changes nothing
    for c in recorded:
        if c.get("phase") != "Succeeded":
            child = kube.get_child(c["kind"], meta["namespace"], c["name"])
            if child is None:
                return None
            st = childstate.state(child)
            was, c["phase"] = c.get("phase"), st.phase
            status["children"] = recorded
            if st.phase == "Failed":
                if was != "Failed":
                    CHILD_FAILURES.labels(kind=c["kind"]).inc()
                status.setdefault("completionTime", state.at)
                return state("Failed", "ChildFailed",
                             _failure_message(kube, obj, c["kind"], c["name"], c.get("step", ""), st))
            if st.phase != "Succeeded":
                return state("Running", "Running", f"{c.get('step')}: {c['kind']} {c['name']} "
                             f"{st.phase.lower()} (an input is gone; following the started child)")
            results.apply(obj["kind"], spec, status, c.get("step", ""), _read_result(kube, obj, c.get("step", "")))
    if recorded[-1].get("step") != FINAL_STEP[obj["kind"]]:
        return None
    status["children"] = recorded
    return _finished(obj["kind"], spec, status, state, len(recorded))


def _finished(kind: str, spec: Any, status: dict[str, Any], state: "_StateSetter", steps: int) -> dict[str, Any]:
    """Every step succeeded: derived fields, then Done (or Failed when eval thresholds are not met)."""
    status.setdefault("completionTime", state.at)
    results.finish(kind, spec, status)
    if status.get("passed") is not None and status.get("total") is not None and status["passed"] < status["total"]:
        return state("Failed", "ThresholdsNotMet", "failing: " + ", ".join(status.get("failing") or []))
    return state("Done", KINDS[kind].done_phase, f"{steps} step(s) completed")


def _failure_message(kube: Kube, obj: dict[str, Any], kind: str, name: str, step: str,
                     st: childstate.ChildState) -> str:
    msg = f"{kind} {name} ({step}) failed: {st.reason}"
    if st.message:
        msg += f": {st.message}"
    pods = _step_pods(kube, obj, step)
    res = results.from_pods(pods)
    if res and res.get("error"):
        msg += f" ({res['error']})"
    elif line := results.failure_line(pods):
        msg += f" ({line})"  # e.g. the job's "error: <field>: ..." line (exit code 2)
    return msg


class _StateSetter:
    def __init__(self, status, done_condition, gen, at, out):
        self.status, self.done, self.gen, self.at, self.out = status, done_condition, gen, at, out

    def __call__(self, state: str, reason: str, message: str) -> dict[str, Any]:
        old_phase = self.status.get("phase")
        new = conditions.with_state(self.status, done_condition=self.done, state=state, reason=reason,
                                    message=message, generation=self.gen, at=self.at)
        if new["phase"] != old_phase or (conditions.get(self.status, "Ready") or {}).get("reason") != reason:
            self.out.events.append(("Warning" if state in ("Failed", "Invalid") else "Normal", reason, message))
        return new


def _step_pods(kube: Kube, obj: dict[str, Any], step: str) -> list[dict[str, Any]]:
    """The step's pods (our labels are on every pod of every child)."""
    meta = obj["metadata"]
    return kube.list_pods(meta["namespace"], {
        LABEL_KIND: obj["kind"], LABEL_NAME: meta["name"], LABEL_STEP: step,
        LABEL_GENERATION: str(meta.get("generation", 1)),
    })


def _read_result(kube: Kube, obj: dict[str, Any], step: str) -> dict[str, Any] | None:
    """The step's result JSON from its pods' termination messages."""
    return results.from_pods(_step_pods(kube, obj, step))


def _adopt_if_orphaned(kube: Kube, child: dict[str, Any], manifest: dict[str, Any]) -> None:
    want = manifest["metadata"].get("ownerReferences")
    have = child["metadata"].get("ownerReferences")
    if want and not have:
        kube.adopt_child(child, want)


def _differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return _strip_times(old) != _strip_times(new)


def _strip_times(s: dict[str, Any]) -> dict[str, Any]:
    """Compare statuses without timestamps that would otherwise change on every pass."""
    s = copy.deepcopy(s)
    for c in s.get("conditions") or []:
        c.pop("lastTransitionTime", None)
    return {k: v for k, v in s.items() if v is not None}


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch turning `old` into `new` (keys that disappear become null)."""
    patch: dict[str, Any] = {}
    for k in old.keys() - new.keys():
        patch[k] = None
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(old.get(k), dict):
            sub = _merge_patch(old[k], v)
            if sub:
                patch[k] = sub
        elif old.get(k) != v:
            patch[k] = v
    return patch
