"""Every job pod the operator creates meets Pod Security Standards "restricted" (v1.31), checked rule
by rule as the standard writes them, and mounts no service-account token."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlmops.kinds import build, planned_status
from vlmops.manifests import with_defaults

REPO = Path(__file__).resolve().parents[2]
# Baseline + restricted: the volume types restricted allows.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}


def _pod_templates():
    for example in ("llava-ov-1.5", "quickstart"):
        docs = [d for f in sorted((REPO / "examples" / example).glob("*.yaml"))
                for d in yaml.safe_load_all(f.read_text()) if d]
        objs = {(d["kind"], d["metadata"]["name"]): with_defaults(d) for d in docs}
        ready = {k: {**o, "status": planned_status(o)} for k, o in objs.items()}
        for (kind, name), obj in objs.items():
            for step in build(obj, ready).steps:
                spec = step.manifest["spec"]
                templates = [spec["template"]] if "template" in spec else \
                    [r["template"] for r in spec["pytorchReplicaSpecs"].values()]
                for t in templates:
                    yield f"{example}/{name}/{step.name}", t["spec"]


PODS = dict(_pod_templates())


def restricted_violations(pod: dict) -> list[str]:
    """The "restricted" profile's checks (baseline included) on one pod spec."""
    out = []
    psc = pod.get("securityContext") or {}
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            out.append(f"{field} must not be true")
    for v in pod.get("volumes") or []:
        types = set(v) - {"name"}
        if not types <= ALLOWED_VOLUMES:
            out.append(f"volume {v['name']}: type {types} not allowed")
    if (psc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost") and not all(
            ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
            for c in containers):
        out.append("seccompProfile must be RuntimeDefault or Localhost")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: only NET_BIND_SERVICE may be added")
        if not (sc.get("runAsNonRoot") or (psc.get("runAsNonRoot") and sc.get("runAsNonRoot") is not False)):
            out.append(f"{name}: runAsNonRoot must be true")
        if 0 in (sc.get("runAsUser"), psc.get("runAsUser")):
            out.append(f"{name}: runAsUser must not be 0")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"{name}: hostPort")
    return out


@pytest.mark.parametrize("where", sorted(PODS))
def test_every_job_pod_meets_the_restricted_profile_and_mounts_no_token(where):
    pod = PODS[where]
    assert restricted_violations(pod) == [], where
    assert pod["automountServiceAccountToken"] is False


def test_the_check_sees_a_pod_that_breaks_the_profile():
    pod = {"hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
           "containers": [{"name": "c", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
                           "ports": [{"containerPort": 80, "hostPort": 80}]}]}
    found = " ".join(restricted_violations(pod))
    for words in ("hostNetwork", "hostPath", "seccompProfile", "privileged", "allowPrivilegeEscalation",
                  "drop ALL", "NET_BIND_SERVICE", "runAsNonRoot", "hostPort"):
        assert words in found, words
