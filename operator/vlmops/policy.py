"""What CR authors may ask for on a shared cluster: the platform's tenancy policy (chart values
`policy.*`, rendered into the operator's config). Enforced before anything is created: a CR that
breaks it stalls naming the field (`PolicyViolation`). Unset parts are unrestricted (`vlmops run`).
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urlsplit

# spec.pod / spec fields a policy may forbid, by their wire names ("scheduling" and "storage" are spec
# fields; "hostPath": volumes of that type, beyond "volumes")
POD_OVERRIDES = ("serviceAccountName", "env", "tolerations", "nodeSelector", "labels", "annotations", "volumes",
                 "volumeMounts", "affinity", "hostNetwork", "securityContext", "shmSize")
SPEC_OVERRIDES = ("storage", "scheduling")
OVERRIDES = (*POD_OVERRIDES, *SPEC_OVERRIDES, "hostPath")
OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs")  # what the operator itself may read


@dataclass(frozen=True)
class Policy:
    image_prefixes: tuple[str, ...] | None = None  # e.g. ("ghcr.io/vlmops/", "registry.local/ml/")
    storage_prefixes: tuple[str, ...] | None = None  # every location in a spec lies under one of these
    allowed_overrides: frozenset[str] = field(default_factory=lambda: frozenset(OVERRIDES))
    max_shards: int | None = None
    max_nodes: int | None = None
    max_gpus: int | None = None  # per CR (nodes x gpusPerNode for a stage)

    @classmethod
    def from_config(cls, data: dict[str, Any] | None) -> "Policy":
        """From the config file's `policy` block (camelCase, as the chart renders it)."""
        data = data or {}
        allowed = data.get("allowOverrides")
        return cls(
            image_prefixes=tuple(data["imagePrefixes"]) if data.get("imagePrefixes") else None,
            storage_prefixes=tuple(data["storagePrefixes"]) if data.get("storagePrefixes") else None,
            allowed_overrides=frozenset(OVERRIDES if allowed is None else allowed),
            max_shards=data.get("maxShards"), max_nodes=data.get("maxNodes"), max_gpus=data.get("maxGpus"))

    def violations(self, spec: dict[str, Any], sizes: list[tuple[str, int, str]]) -> list[str]:
        """Every way a spec (wire format, locations resolved) breaks the policy, as `path: why`."""
        return [*self._image_problems(spec), *self._override_problems(spec), *self._location_problems(spec),
                *self._size_problems(sizes)]

    def may_read(self, uri: str) -> bool:
        """Whether the operator itself may read `uri` (progress documents): object storage under the
        allowed prefixes only — never a CR-chosen http:// or file:// address."""
        return urlsplit(uri).scheme in OBJECT_STORES and not _location_problem(uri, self.storage_prefixes)

    def _image_problems(self, spec: dict[str, Any]) -> Iterator[str]:
        if self.image_prefixes is None:
            return
        for path, image in (("spec.image", spec.get("image")), ("spec.pod.image", (spec.get("pod") or {}).get("image"))):
            if isinstance(image, str) and not image.startswith(self.image_prefixes):
                yield (f"{path}: image {image!r} is not from an allowed registry "
                       f"({', '.join(self.image_prefixes)}; chart value policy.imagePrefixes)")

    def _override_problems(self, spec: dict[str, Any]) -> Iterator[str]:
        pod = spec.get("pod") or {}
        for name in (*POD_OVERRIDES, *SPEC_OVERRIDES):
            value, path = (spec.get(name), f"spec.{name}") if name in SPEC_OVERRIDES else (pod.get(name), f"spec.pod.{name}")
            if value not in (None, {}, []) and name not in self.allowed_overrides:
                yield f"{path}: not allowed on this cluster (chart value policy.allowOverrides)"
        if "hostPath" not in self.allowed_overrides:
            for i, volume in enumerate(pod.get("volumes") or []):
                if isinstance(volume, dict) and "hostPath" in volume:
                    yield (f"spec.pod.volumes[{i}].hostPath: node directories are not allowed on this cluster "
                           "(chart value policy.allowOverrides: hostPath)")

    def _location_problems(self, spec: dict[str, Any]) -> Iterator[str]:
        from .builders.uris import locations  # (builders' context holds a Policy: imported late)

        mounts = [m.get("mountPath", "") for m in (spec.get("pod") or {}).get("volumeMounts") or []
                  if isinstance(m, dict)]
        for path, uri in locations(spec):
            if _on_own_volume(uri, mounts):
                continue  # a file on a volume the CR mounts (and the volume passed the overlay gate)
            if problem := _location_problem(uri, self.storage_prefixes):
                yield f"{path}: {problem}"

    def _size_problems(self, sizes: list[tuple[str, int, str]]) -> Iterator[str]:
        limits = {"shards": self.max_shards, "nodes": self.max_nodes, "gpus": self.max_gpus}
        for path, value, what in sizes:
            limit = limits[what]
            if limit is not None and value > limit:
                yield (f"{path}: {value} {what} exceed this cluster's limit of {limit} "
                       f"(chart value policy.max{what.capitalize()})")


def _on_own_volume(uri: str, mounts: list[str]) -> bool:
    """Whether `uri` is a path inside the pod under one of the CR's own volume mounts (e.g. a tokenizer
    directory on a models volume); `..` never counts."""
    if not uri.startswith("/") or ".." in uri.split("/"):
        return False
    return any(m.startswith("/") and (uri == m.rstrip("/") or uri.startswith(m.rstrip("/") + "/"))
               for m in mounts if m.rstrip("/"))


def _location_problem(uri: str, prefixes: tuple[str, ...] | None) -> str | None:
    """Why `uri` is not an allowed location (None: it is). `..` is refused outright, so a location can
    never leave its prefix after normalisation."""
    if prefixes is None:
        return None
    parts = urlsplit(uri)
    if ".." in parts.path.split("/"):
        return f"{uri!r} contains '..'"
    normal = f"{parts.scheme}://{parts.netloc}{posixpath.normpath(parts.path or '/')}" if parts.scheme else uri
    if not any(normal == p.rstrip("/") or normal.startswith(p.rstrip("/") + "/") for p in prefixes):
        return f"{uri!r} is outside the allowed storage ({', '.join(prefixes)}; chart value policy.storagePrefixes)"
    return None
