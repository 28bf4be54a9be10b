"""Reading CR YAML files (files or directories) and validating them. Used by the CLI and runner."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml
from pydantic import ValidationError

from vlmops_contract.api import API_VERSION

from .crdgen import crd
from .kinds import KINDS
from .policy import Policy
from .api.errors import format_validation_error
from .api.kind import name_problem


@dataclass
class Doc:
    obj: dict[str, Any]
    source: str  # "file.yaml#index"

    @property
    def key(self) -> tuple[str, str]:
        return self.obj["kind"], self.obj["metadata"]["name"]


class ManifestError(Exception):
    pass


def load(paths: Iterable[str]) -> list[Doc]:
    docs: list[Doc] = []
    for p in paths:
        path = Path(p)
        # Like `kubectl apply -f DIR`: the directory's own YAML files, not subdirectories.
        files = sorted(f for f in path.glob("*") if f.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
        if not files:
            raise ManifestError(f"{p}: no YAML files found")
        for f in files:
            if not f.exists():
                raise ManifestError(f"{f}: no such file")
            try:
                loaded = list(yaml.safe_load_all(f.read_text()))
            except yaml.YAMLError as e:
                raise ManifestError(f"{f}: not valid YAML: {e}") from e
            for i, obj in enumerate(loaded):
                if obj is None:
                    continue
                if not isinstance(obj, dict):
                    raise ManifestError(f"{f}#{i}: expected a mapping, got {type(obj).__name__}")
                docs.append(Doc(obj, f"{f}#{i}"))
    return docs


def ours(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d.obj.get("apiVersion") == API_VERSION and d.obj.get("kind") in KINDS]


@functools.cache
def _validator(kind: str) -> jsonschema.Draft4Validator:
    schema = crd(KINDS[kind].api)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft4Validator(schema)  # OpenAPI v3 numeric bounds follow draft 4


def validate(doc: Doc, policy: Policy | None = None) -> list[str]:
    """Every problem with a CR, each as `field.path: message` (with `policy`: the cluster's too)."""
    obj = doc.obj
    errors: list[str] = []
    if obj.get("apiVersion") != API_VERSION:
        return [f"apiVersion: expected {API_VERSION}, got {obj.get('apiVersion')!r}"]
    if obj.get("kind") not in KINDS:
        return [f"kind: unknown kind {obj.get('kind')!r} (expected one of {', '.join(KINDS)})"]
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        errors.append("metadata.name: required")
    elif problem := name_problem(name):
        errors.append(problem)
    for e in sorted(_validator(obj["kind"]).iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        errors.append(f"{path}: {e.message}")
    kind = KINDS[obj["kind"]]
    try:
        spec = kind.spec.model_validate(obj.get("spec") or {})
    except ValidationError as e:
        for line in format_validation_error(e).split("; "):
            if not any(line.split(":")[0] == other.split(":")[0] for other in errors):
                errors.append(line)
        return errors
    if policy is not None:
        errors += policy.violations(obj.get("spec") or {}, kind.sizes(spec))
    return errors


def with_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """The CR as the API server would store it: spec defaults filled in, metadata completed."""
    out = dict(obj)
    spec = KINDS[obj["kind"]].spec.model_validate(obj.get("spec") or {})
    out["spec"] = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    meta = dict(obj.get("metadata") or {})
    meta.setdefault("namespace", "default")
    meta.setdefault("generation", 1)
    out["metadata"] = meta
    return out
