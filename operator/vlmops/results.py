"""Reading job results: the result line in a finished pod's termination message, or the last line a
failed container left. Pure functions over pod objects (the reconciler does the reads)."""
from __future__ import annotations

from typing import Any

from vlmops_contract.labels import COMPLETION_INDEX_ANNOTATION
from vlmops_contract.result import parse_result


def from_pods(pods: list[dict[str, Any]], container: str | None = None) -> dict[str, Any] | None:
    """The result of the first pod (by completion index, then name) whose container reported one;
    a sharded step's per-shard results are attached under "shards"."""
    found: list[tuple[int, str, dict[str, Any]]] = []
    for pod in pods:
        ann = pod["metadata"].get("annotations") or {}
        index = int(ann.get(COMPLETION_INDEX_ANNOTATION, 0) or 0)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if container and cs.get("name") != container:
                continue
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            res = parse_result((term or {}).get("message") or "")
            if res is not None:
                found.append((index, pod["metadata"]["name"], res))
    if not found:
        return None
    found.sort(key=lambda t: (t[0], t[1]))
    first = dict(found[0][2])
    if len(found) > 1:
        first["shards"] = [r for _, _, r in found]
    return first


def image_id(pods: list[dict[str, Any]]) -> str | None:
    """The image digest (`imageID`, e.g. `ghcr.io/x/y@sha256:...`) the first pod that reported a
    result ran, as the kubelet recorded it."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if cs.get("imageID") and parse_result((term or {}).get("message") or "") is not None:
                return cs["imageID"]
    return None


def failure_line(pods: list[dict[str, Any]]) -> str | None:
    """The last line a failed container left in its termination message (with
    FallbackToLogsOnError, the log tail: a job's bad-input exit prints `error: ...` last)."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term and term.get("exitCode") not in (0, None):
                lines = [ln.strip() for ln in (term.get("message") or "").splitlines() if ln.strip()]
                if lines:
                    return lines[-1][:512]
    return None


def copy_into(status: dict[str, Any], result: dict[str, Any] | None, keys: tuple[str, ...]) -> None:
    """Copy the kind's result keys (the jobs' result line contract) into status."""
    for key in keys:
        if result and result.get(key) is not None:
            status[key] = result[key]
