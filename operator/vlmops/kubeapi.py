"""`KubeAPI`: the calls the reconciler makes, as a Protocol. Implemented by the cluster client
(`kube.Kube`), the local runner's workdir store (`local.kube.LocalKube`) and the tests' fake, so
the same reconcile runs against all three. Objects are plain camelCase dicts, as the server sends."""
from __future__ import annotations

from typing import Any, Protocol

Obj = dict[str, Any]


class CreateRefused(Exception):
    """The API server refused to create a child for a reason retrying cannot fix by itself (403 from
    RBAC or OwnerReferencesPermissionEnforcement, 422 from validation or a policy): the CR stalls
    with the server's message instead of retrying silently."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class KubeReader(Protocol):
    """The reads `reconciler.observe` makes: all that `vlmops render`/`validate` implement offline
    (a test runs observe through an object that has nothing else)."""

    def get_cr(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def get_child(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Obj]: ...


READS = tuple(n for n in vars(KubeReader) if not n.startswith("_"))


class KubeAPI(KubeReader, Protocol):
    def patch_cr_status(self, kind: str, namespace: str, name: str, patch: Obj) -> None:
        """Apply a JSON merge patch to the CR's status subresource."""

    def create_child(self, manifest: Obj) -> Obj:
        """Create-if-absent: an existing object of that name is returned, not an error."""

    def adopt_child(self, child: Obj, owner_refs: list[Obj]) -> None: ...

    def expire_child(self, kind: str, namespace: str, name: str, seconds: int) -> None:
        """Give a finished child a time-to-live (ttlSecondsAfterFinished): its controller deletes it."""

    def delete_child(self, kind: str, namespace: str, name: str) -> None:
        """Delete it and its pods (the child remains, being deleted, until they are gone); an absent
        child is not an error."""

    def post_event(self, obj: Obj, type_: str, reason: str, message: str, at: str) -> None: ...
