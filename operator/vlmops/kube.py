"""The operator's only door to the API server (`KubeAPI` over the kubernetes client): plain-dict reads
and idempotent writes.

Responses are read raw (`_preload_content=False`) so objects stay exactly as the server sent
them (camelCase dicts), the same shape builders produce. Every write is counted in metrics.
"""
from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from vlmops_contract.api import GROUP, VERSION

from .childstate import CHILD_APIS as _CHILD_API, TTL_PATCH, request_body
from .kinds import KINDS
from .kubeapi import CreateRefused
from .metrics import API_WRITES


def _perms(api_group: str, resource: str, verbs: tuple[str, ...], why: str, scope: str = "ns") -> list[dict[str, Any]]:
    return [{"apiGroup": api_group, "resource": resource, "verb": v, "scope": scope, "why": why} for v in verbs]


# Every API call the operator process makes (ours here in Kube, and kopf's), one row per verb, for
# the chart's RBAC. scope "ns": needed in each watched namespace (a Role there suffices);
# "cluster": cluster-scoped objects kopf observes (namespaces, CRDs). Checked against the
# requests the real operator made in tests/operator/test_operator_integration.py.
REQUIRED_PERMISSIONS: list[dict[str, Any]] = [
    *[row for k in KINDS.values() for row in (
        _perms(GROUP, k.plural, ("get", "list", "watch", "patch"),
               "reconcile reads; kopf list/watch; kopf patches its annotations (progress, diff base)")
        + _perms(GROUP, f"{k.plural}/status", ("patch",), "status written by the reconciler")
        # Never called: OwnerReferencesPermissionEnforcement requires it of whoever creates a child with
        # blockOwnerDeletion: true (ours do), or every child create is refused.
        + _perms(GROUP, f"{k.plural}/finalizers", ("update",), "children's ownerReferences block owner deletion"))],
    *_perms("batch", "jobs", ("get", "list", "watch", "create", "patch", "delete"),
            "children: create-if-absent, adoption (ownerReferences), kopf watch, stopping an older generation, TTL "
            "once the result is in status"),
    *_perms("kubeflow.org", "pytorchjobs", ("get", "list", "watch", "create", "patch", "delete"),
            "training children: create-if-absent, adoption, kopf watch, stopping an older generation, TTL"),
    *_perms("trainer.kubeflow.org", "trainjobs", ("get", "list", "watch", "create", "patch", "delete"),
            "training children (runtime TrainJob): create-if-absent, adoption, kopf watch, stopping an older "
            "generation, deleting a succeeded one after the TTL (it has no TTL field)"),
    *_perms("", "pods", ("list",), "job results from terminated containers' termination messages"),
    *_perms("", "events", ("create",), "Kubernetes Events on transitions"),
    *_perms("", "namespaces", ("list", "watch"), "kopf: namespace observation", scope="cluster"),
    *_perms("coordination.k8s.io", "leases", ("get", "create", "update"),
            "leader election among replicas (the chart's --leader-election-namespace)", scope="release"),
    *_perms("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"),
            "kopf: resource observation (optional for kopf; discovery works without it)", scope="cluster"),
]


# Statuses of a refused create that a retry alone cannot fix (401/429/5xx are transient: retried).
REFUSALS = (400, 403, 404, 422)


def _server_message(e: ApiException) -> str:
    """The API server's own message (its Status object), else the HTTP reason."""
    try:
        return json.loads(e.body or "{}").get("message") or str(e.reason)
    except ValueError:
        return str(e.reason)


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None, timeout: float = 30.0):
        self.api_client = api_client or client.ApiClient()
        # Every call: read raw, and time out (a hung request must not hold a worker forever).
        self._raw = {"_preload_content": False, "_request_timeout": timeout}
        self.custom = client.CustomObjectsApi(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _json(resp: Any) -> dict[str, Any]:
        return json.loads(resp.data)

    def _get(self, fn, *args, **kw) -> dict[str, Any] | None:
        try:
            return self._json(fn(*args, **self._raw, **kw))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    # -- our custom resources ----------------------------------------------------------------
    def get_cr(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, KINDS[kind].plural, name)

    def patch_cr_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        API_WRITES.labels(verb="patch", resource=f"{KINDS[kind].plural}/status").inc()
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, KINDS[kind].plural, name, {"status": patch}, **self._raw)

    # -- children ------------------------------------------------------------------------------
    def get_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        group, version, plural = _CHILD_API[kind]
        if kind == "Job":
            return self._get(self.batch.read_namespaced_job, name, namespace)
        return self._get(self.custom.get_namespaced_custom_object, group, version, namespace, plural, name)

    def create_child(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create-if-absent: a 409 means an earlier attempt (or operator) already made it."""
        kind, ns = manifest["kind"], manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        group, version, plural = _CHILD_API[kind]
        API_WRITES.labels(verb="create", resource=plural).inc()
        try:
            if kind == "Job":
                resp = self.batch.create_namespaced_job(ns, request_body(manifest), **self._raw)
            else:
                resp = self.custom.create_namespaced_custom_object(group, version, ns, plural, manifest,
                                                                   **self._raw)
            return self._json(resp)
        except ApiException as e:
            if e.status in REFUSALS:
                raise CreateRefused(e.status, _server_message(e)) from e
            if e.status != 409:
                raise
        existing = self.get_child(kind, ns, name)
        assert existing is not None
        return existing

    def adopt_child(self, child: dict[str, Any], owner_refs: list[dict[str, Any]]) -> None:
        """Set ownerReferences on a child that lost them (e.g. created by `vlmops render | kubectl`)."""
        kind, ns, name = child["kind"], child["metadata"]["namespace"], child["metadata"]["name"]
        group, version, plural = _CHILD_API[kind]
        API_WRITES.labels(verb="patch", resource=plural).inc()
        body = {"metadata": {"ownerReferences": owner_refs}}
        if kind == "Job":
            self.batch.patch_namespaced_job(name, ns, body, **self._raw)
        else:
            self.custom.patch_namespaced_custom_object(group, version, ns, plural, name, body, **self._raw)

    def expire_child(self, kind: str, namespace: str, name: str, seconds: int) -> None:
        group, version, plural = _CHILD_API[kind]
        API_WRITES.labels(verb="patch", resource=plural).inc()
        body = TTL_PATCH[kind](seconds)
        if kind == "Job":
            self.batch.patch_namespaced_job(name, namespace, body, **self._raw)
        else:
            self.custom.patch_namespaced_custom_object(group, version, namespace, plural, name, body, **self._raw)

    def delete_child(self, kind: str, namespace: str, name: str) -> None:
        group, version, plural = _CHILD_API[kind]
        API_WRITES.labels(verb="delete", resource=plural).inc()
        # Foreground: the child stays (being deleted) until its pods are gone, so the reconciler starts
        # the next generation only once nothing of this one can still write.
        body = client.V1DeleteOptions(propagation_policy="Foreground")
        try:
            if kind == "Job":
                self.batch.delete_namespaced_job(name, namespace, body=body, **self._raw)
            else:
                self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name, body=body,
                                                            **self._raw)
        except ApiException as e:
            if e.status != 404:
                raise

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        data = self._get(self.core.list_namespaced_pod, namespace, label_selector=sel)
        items = (data or {}).get("items") or []
        # Filter again client-side: selectors are cheap to re-check and some test servers ignore them.
        return [p for p in items if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str, at: str) -> None:
        meta = obj["metadata"]
        API_WRITES.labels(verb="create", resource="events").inc()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": type_, "reason": reason, "message": message[:1024],
            "firstTimestamp": at, "lastTimestamp": at, "count": 1,
            "source": {"component": "vlmops-operator"},
            "reportingComponent": "vlmops-operator",
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body, **self._raw)
        except ApiException:
            pass  # events are best-effort; never fail a reconcile over one
