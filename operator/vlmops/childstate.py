"""Reading a child's state: batch/v1 Job and kubeflow.org/v1 PyTorchJob. Pure functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def state(child: dict[str, Any]) -> ChildState:
    return pytorchjob_state(child) if child.get("kind") == "PyTorchJob" else job_state(child)
