"""Chart test helpers: a long-lived Helm render subprocess (helm_render.py) and YAML lookups."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vlmops"

# Every optional feature on: what most tests look at.
ALL_ON: dict[str, Any] = {
    "monitoring": {
        "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}},
        "podMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}},
        "dashboard": {"enabled": True},
    },
    "jobs": {"storage": {"endpointURL": "http://minio.storage:9000", "region": "us-east-1",
                         "secretName": "vlmops-s3", "prefix": "s3://vlm-data/runs"},
             "serviceAccountName": "vlmops-job"},
}


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader reading floats the YAML 1.2 way, as Go (Helm, kubectl, the API server) does:
    Helm's toYaml writes 1e-05, which YAML 1.1 (PyYAML) would read as a string."""


Yaml12Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."))


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=Yaml12Loader) if d]


class RenderError(Exception):
    pass


class Helm:
    """Talks to helm_render.py (started with HELM_DRIVER=memory, which the Go library reads at load)."""

    def __init__(self) -> None:
        env = {**os.environ, "HELM_DRIVER": "memory", "HELM_CACHE_HOME": "/tmp/vlmops-helm/cache",
               "HELM_CONFIG_HOME": "/tmp/vlmops-helm/config", "HELM_DATA_HOME": "/tmp/vlmops-helm/data"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("helm_render.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.cache: dict[str, dict[str, Any]] = {}

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(req, sort_keys=True)
        if key not in self.cache:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(key + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("helm_render.py exited")
            self.cache[key] = json.loads(line)
        return self.cache[key]

    def render(self, values: dict[str, Any] | None = None, namespace: str = "vlmops-system",
               release: str = "vlmops") -> list[dict[str, Any]]:
        """Rendered objects (Helm install into the emulator); RenderError with Helm's message on failure."""
        reply = self.call({"op": "render", "values": values or {}, "namespace": namespace, "release": release})
        if not reply["ok"]:
            raise RenderError(reply["error"])
        return load_all(reply["manifest"])

    def notes(self, values: dict[str, Any] | None = None, namespace: str = "vlmops-system",
              release: str = "vlmops") -> str:
        """NOTES.txt as Helm renders it for these values."""
        reply = self.call({"op": "render", "values": values or {}, "namespace": namespace, "release": release})
        if not reply["ok"]:
            raise RenderError(reply["error"])
        return reply["notes"]

    def lint(self) -> dict[str, Any]:
        reply = self.call({"op": "lint"})
        if not reply["ok"]:
            raise RenderError(reply["error"])
        return reply["result"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def helm_fixture():
    """The session fixture both tests/chart and tests/docs use: one Helm renderer process."""
    import pytest

    @pytest.fixture(scope="session")
    def helm():
        pytest.importorskip("helm_sdkpy")
        pytest.importorskip("kmock")
        h = Helm()
        yield h
        h.close()

    return helm


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]
