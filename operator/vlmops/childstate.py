"""The child kinds the operator creates (batch/v1 Job, kubeflow.org/v1 PyTorchJob, Trainer v2 TrainJob):
where they live in the API and how to read their state. Pure functions."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# kind -> (group, version, plural)
CHILD_APIS = {"Job": ("batch", "v1", "jobs"), "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
              "TrainJob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs")}
# Where a finished child's time-to-live goes (a merge patch). A TrainJob has no such field (Trainer
# v2.3): the operator deletes it itself once the same time has passed (`reap_due`); its CR is
# resynced until then (`awaits_reaping`), done or not.
TTL_PATCH = {"Job": lambda s: {"spec": {"ttlSecondsAfterFinished": s}},
             "PyTorchJob": lambda s: {"spec": {"runPolicy": {"ttlSecondsAfterFinished": s}}}}


# Children created through a typed API of the kubernetes client: since kubernetes 37 the client
# validates such a body into its model (fields reordered, unknown ones refused). Custom resources
# (PyTorchJob, TrainJob) go as built.
TYPED_MODELS = {"Job": "V1Job"}


def request_body(manifest: dict[str, Any]) -> dict[str, Any]:
    """A child as the operator's API client puts it on the wire (what `vlmops render` prints); a
    body the client's model refuses is a builder bug, named here (kind, name, field)."""
    model = TYPED_MODELS.get(manifest["kind"])
    if model is None:
        return manifest
    from kubernetes import client
    from pydantic import TypeAdapter, ValidationError

    try:
        typed = TypeAdapter(getattr(client, model)).validate_python(manifest)
    except ValidationError as e:
        fields = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ValueError(f"{manifest['kind']} {manifest['metadata'].get('name')}: the kubernetes client's "
                         f"{model} refuses {fields}") from None
    return client.ApiClient().sanitize_for_serialization(typed)


def ttl_of(child: dict[str, Any]) -> int | None:
    spec = child.get("spec") or {}
    if child.get("kind") == "PyTorchJob":
        return (spec.get("runPolicy") or {}).get("ttlSecondsAfterFinished")
    return spec.get("ttlSecondsAfterFinished")


# A PyTorchJob can carry several True conditions at once; the most decisive one wins.
PYTORCHJOB_PRECEDENCE = ["Failed", "Succeeded", "Suspended", "Restarting", "Running", "Created"]


@dataclass
class ChildState:
    phase: str  # Pending | Running | Suspended | Succeeded | Failed
    reason: str = ""
    message: str = ""
    completed: int | None = None  # Indexed Jobs: pods (shards) succeeded
    total: int | None = None


def job_state(job: dict[str, Any]) -> ChildState:
    st = job.get("status") or {}
    true = {c["type"]: c for c in st.get("conditions") or [] if c.get("status") == "True"}
    total = (job.get("spec") or {}).get("completions")
    done = st.get("succeeded") or 0
    if "Failed" in true or "FailureTarget" in true:
        c = true.get("Failed") or true["FailureTarget"]
        return ChildState("Failed", c.get("reason", "JobFailed"), c.get("message", ""), done, total)
    if "Complete" in true or "SuccessCriteriaMet" in true:
        return ChildState("Succeeded", "Complete", "", done, total)
    if "Suspended" in true:
        return ChildState("Suspended", "Suspended", true["Suspended"].get("message", ""), done, total)
    if st.get("active") or st.get("startTime"):
        return ChildState("Running", "Running", "", done, total)
    return ChildState("Pending", "Created", "", done, total)


def pytorchjob_state(pj: dict[str, Any]) -> ChildState:
    st = pj.get("status") or {}
    true = {c["type"]: c for c in st.get("conditions") or [] if c.get("status") == "True"}
    for t in PYTORCHJOB_PRECEDENCE:
        if t in true:
            c = true[t]
            phase = {"Created": "Pending", "Restarting": "Running"}.get(t, t)
            return ChildState(phase, c.get("reason", t), c.get("message", ""))
    return ChildState("Pending", "Created", "")


def trainjob_state(tj: dict[str, Any]) -> ChildState:
    """A TrainJob's metav1 conditions (Complete / Failed / Suspended), else its JobSet's jobs."""
    st = tj.get("status") or {}
    true = {c["type"]: c for c in st.get("conditions") or [] if c.get("status") == "True"}
    for t, phase in (("Failed", "Failed"), ("Complete", "Succeeded"), ("Suspended", "Suspended")):
        if t in true:
            return ChildState(phase, true[t].get("reason", t), true[t].get("message", ""))
    if any((j.get("active") or 0) + (j.get("succeeded") or 0) for j in st.get("jobsStatus") or []):
        return ChildState("Running", "Running", "")
    return ChildState("Pending", "Created", "")


_STATES = {"PyTorchJob": pytorchjob_state, "TrainJob": trainjob_state}


def state(child: dict[str, Any]) -> ChildState:
    return _STATES.get(child.get("kind"), job_state)(child)


def finished_at(child: dict[str, Any]) -> str | None:
    """When a succeeded child finished: its Complete condition's lastTransitionTime."""
    for c in (child.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Complete" and c.get("status") == "True":
            return c.get("lastTransitionTime")
    return None


def _time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def reap_due(child: dict[str, Any], recorded_phase: str | None, ttl: int | None, now: str) -> bool:
    """A succeeded child of a kind without a TTL field (TrainJob) is deleted by the operator, as a
    Job's TTL controller would delete a Job: only once its result is in the CR's status (the CR
    recorded it Succeeded) and `ttl` seconds after it finished. Never a failed one (kept to debug)."""
    if ttl is None or child.get("kind") in TTL_PATCH or recorded_phase != "Succeeded":
        return False
    if state(child).phase != "Succeeded" or not (at := finished_at(child)):
        return False
    return _time(now) >= _time(at) + dt.timedelta(seconds=ttl)


def awaits_reaping(status: dict[str, Any], ttl: int | None, now: str, margin: int) -> bool:
    """A CR whose succeeded child has no TTL field keeps being resynced (though done) until `ttl`
    (+ `margin`, a few resync intervals) has passed since the CR finished: then that child is gone."""
    if ttl is None or not status.get("completionTime"):
        return False
    if not any(c.get("kind") not in TTL_PATCH and c.get("kind") in CHILD_APIS and c.get("phase") == "Succeeded"
               for c in status.get("children") or []):
        return False
    return _time(now) <= _time(status["completionTime"]) + dt.timedelta(seconds=ttl + margin)
