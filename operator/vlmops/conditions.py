"""metav1.Condition bookkeeping and the kstatus trio (Ready/Reconciling/Stalled). Pure functions."""
from __future__ import annotations

import copy
import datetime as dt
from typing import Any


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str,
                  generation: int | None, at: str) -> list[dict[str, Any]]:
    """Upsert a condition; lastTransitionTime only moves when `status` changes (metav1 semantics)."""
    out = [dict(c) for c in conditions if c.get("type") != type_]
    old = next((c for c in conditions if c.get("type") == type_), None)
    ltt = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") else at
    new = {"type": type_, "status": status, "reason": reason, "message": message[:32768],
           "lastTransitionTime": ltt}
    if generation is not None:
        new["observedGeneration"] = generation
    out.append(new)
    order = {"Ready": 0, "Succeeded": 1, "Reconciling": 2, "Stalled": 3}
    return sorted(out, key=lambda c: (order.get(c["type"], 9), c["type"]))


def with_state(status: dict[str, Any], *, done_condition: str, state: str, reason: str, message: str,
               generation: int | None, at: str) -> dict[str, Any]:
    """Set phase + conditions for one of the states a CR can be in.

    state: Waiting | Running | Done | Failed | Invalid
    """
    s = copy.deepcopy(status)
    conds = list(s.get("conditions") or [])
    done = "True" if state == "Done" else "False"
    reconciling = "True" if state in ("Waiting", "Running") else "False"
    stalled = "True" if state in ("Failed", "Invalid") else "False"
    conds = set_condition(conds, "Ready", done, reason, message, generation, at)
    if done_condition != "Ready":
        conds = set_condition(conds, done_condition, done, reason, message, generation, at)
    conds = set_condition(conds, "Reconciling", reconciling, reason if reconciling == "True" else "Idle",
                          message if reconciling == "True" else "", generation, at)
    conds = set_condition(conds, "Stalled", stalled, reason if stalled == "True" else "Healthy",
                          message if stalled == "True" else "", generation, at)
    s["conditions"] = conds
    s["phase"] = {"Waiting": "Pending", "Running": "Running", "Failed": "Failed", "Invalid": "Failed",
                  "Done": "Ready" if done_condition == "Ready" else "Succeeded"}[state]
    s["observedGeneration"] = generation
    s["message"] = message
    return s


def get(status: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None
