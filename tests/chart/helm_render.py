"""Render the chart with the real Helm library (helm-sdkpy) into an in-memory Kubernetes API emulator.

helm-sdkpy has no `template` action, so rendering = `Install` (wait=False) into kmock's
KubernetesEmulator served on 127.0.0.1, with HELM_DRIVER=memory so no release Secret is written.
Install returns the rendered manifest and enforces values.schema.json exactly like `helm install`.

The Go library reads HELM_DRIVER only from the environment the process started with, so this file
runs as a subprocess (see conftest.py): one JSON request per stdin line, one JSON reply per stdout
line. Requests: {"op": "render", "values": {...}, "namespace": "ns", "release": "r"} or
{"op": "lint"}. Replies: {"ok": true, "manifest": "..."} / {"ok": false, "error": "..."}.

The thin layer over the emulator (kept minimal, for Helm only):
- /api/v1 discovery answers groupVersion "v1" (kmock says "/v1", which breaks Helm's REST mapper);
- /version reports v1.31.0 (kmock reports v1.26, below the chart's kubeVersion);
- every kind the chart renders is declared with its Kind and scope so Helm can map it.
Each render gets a fresh emulator: installs never collide on cluster-scoped names.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

CHART = str(Path(__file__).resolve().parents[2] / "charts" / "vlmops")

# (group/version/plural, Kind, namespaced)
RESOURCES = [
    ("v1/namespaces", "Namespace", False),
    ("v1/configmaps", "ConfigMap", True),
    ("v1/secrets", "Secret", True),
    ("v1/services", "Service", True),
    ("v1/serviceaccounts", "ServiceAccount", True),
    ("apps/v1/deployments", "Deployment", True),
    ("rbac.authorization.k8s.io/v1/clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io/v1/clusterrolebindings", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io/v1/roles", "Role", True),
    ("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding", True),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False),
    ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True),
    ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", True),
    ("monitoring.coreos.com/v1/servicemonitors", "ServiceMonitor", True),
    ("monitoring.coreos.com/v1/podmonitors", "PodMonitor", True),
    ("monitoring.coreos.com/v1/prometheusrules", "PrometheusRule", True),
    ("trainer.kubeflow.org/v1alpha1/clustertrainingruntimes", "ClusterTrainingRuntime", False),
]


def _emulator():
    from kmock import KubernetesEmulator, ResourceInfo

    class HelmEmulator(KubernetesEmulator):
        async def _serve_version(self, request):
            payload = await super()._serve_version(request)
            if request.resource.group == "":
                payload["groupVersion"] = request.resource.version
            return payload

        async def _serve_server_version(self, request):
            payload = await super()._serve_server_version(request)
            payload.update(major="1", minor="31", gitVersion="v1.31.0")  # kmock says 1.26; the chart needs >= 1.27
            return payload

    emu = HelmEmulator()
    for key, kind, namespaced in RESOURCES:
        emu.resources[key] = ResourceInfo(kind=kind, namespaced=namespaced, singular=kind.lower(),
                                          verbs={"get", "list", "watch", "create", "patch", "update", "delete"})
    return emu


def _kubeconfig(url: str, namespace: str) -> str:
    import yaml  # helm-sdkpy detects a kubeconfig *YAML* string (JSON is taken for a path)

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "emu", "cluster": {"server": url}}],
        "users": [{"name": "emu", "user": {"token": "emulator"}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu", "namespace": namespace}}],
        "current-context": "emu",
    })


async def _render(req: dict) -> dict:
    import helm_sdkpy
    from kmock import Server

    namespace = req.get("namespace", "vlmops-system")
    emu = _emulator()
    async with emu, Server(emu) as srv:
        cfg = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=_kubeconfig(str(srv.url).rstrip("/"), namespace))
        try:
            if req["op"] == "lint":
                result = await helm_sdkpy.Lint(cfg).run(req.get("chart", CHART))
                return {"ok": True, "result": result}
            result = await helm_sdkpy.Install(cfg).run(req.get("release", "vlmops"), req.get("chart", CHART),
                                                       values=req.get("values") or {}, wait=False, timeout=60)
        except Exception as e:  # noqa: BLE001 - the message is the answer
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        created = sorted(f"{k[0].plural}/{k[1] or ''}/{k[2]}" for k in emu.objects.keys())
        return {"ok": True, "manifest": result.get("manifest", ""), "created": created,
                "notes": (result.get("info") or {}).get("notes", "")}


def main() -> int:
    if os.environ.get("HELM_DRIVER") != "memory":
        print(json.dumps({"ok": False, "error": "start me with HELM_DRIVER=memory"}), flush=True)
        return 2
    loop = asyncio.new_event_loop()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = loop.run_until_complete(_render(json.loads(line)))
        except Exception as e:  # noqa: BLE001
            reply = {"ok": False, "error": f"harness: {type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
