"""A dict-backed `KubeAPI` for the reconcile tests: what the emulator cannot show (GC, 409s,
conflicts, refusals) is played here; every write is recorded."""
from __future__ import annotations

import copy
import json
from typing import Any

from vlmops import mergepatch


class FakeKube:
    """Dict-backed stand-in for Kube: records every write."""

    def __init__(self, crs: list[dict[str, Any]]):
        self.crs = {(o["kind"], o["metadata"]["name"]): o for o in copy.deepcopy(crs)}
        for i, o in enumerate(self.crs.values()):
            o["metadata"].update(uid=f"uid-{i}", generation=1, namespace="ns")
        self.children: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.writes: list[tuple[str, str]] = []

    def get_cr(self, kind, namespace, name):
        return copy.deepcopy(self.crs.get((kind, name)))

    def patch_cr_status(self, kind, namespace, name, patch):
        self.writes.append(("patch-status", name))
        obj = self.crs[(kind, name)]
        obj["status"] = mergepatch.apply(obj.get("status") or {}, patch)

    def get_child(self, kind, namespace, name):
        return copy.deepcopy(self.children.get(name))

    def create_child(self, manifest):
        self.writes.append(("create", manifest["metadata"]["name"]))
        self.children[manifest["metadata"]["name"]] = copy.deepcopy(manifest)
        return copy.deepcopy(manifest)

    def adopt_child(self, child, owner_refs):
        self.writes.append(("adopt", child["metadata"]["name"]))
        self.children[child["metadata"]["name"]]["metadata"]["ownerReferences"] = owner_refs

    def expire_child(self, kind, namespace, name, seconds):
        self.writes.append(("expire", name))
        child = self.children[name]
        if kind == "PyTorchJob":
            child["spec"].setdefault("runPolicy", {})["ttlSecondsAfterFinished"] = seconds
        else:
            child["spec"]["ttlSecondsAfterFinished"] = seconds

    def delete_child(self, kind, namespace, name):
        self.writes.append(("delete", name))
        self.children.pop(name, None)

    def list_pods(self, namespace, selector):
        return [p for p in self.pods if all(p["metadata"]["labels"].get(k) == v for k, v in selector.items())]

    def post_event(self, obj, type_, reason, message, at):
        self.writes.append(("event", reason))

    # test helpers
    def succeed(self, name: str, result: dict[str, Any]) -> None:
        child = self.children[name]
        labels = child["metadata"]["labels"]
        self.pods.append({"metadata": {"name": name + "-0", "labels": dict(labels), "annotations": {}},
                          "status": {"containerStatuses": [{"name": "main", "state": {"terminated": {
                              "exitCode": 0, "message": json.dumps({"vlmopsResult": result})}}}]}})
        if child["kind"] == "Job":
            child["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
        elif child["kind"] == "TrainJob":
            child["status"] = {"conditions": [{"type": "Complete", "status": "True", "reason": "JobsCompleted"}]}
        else:
            child["status"] = {"conditions": [{"type": "Succeeded", "status": "True"}]}
