"""The GitOps examples converge from an empty cluster: rendered the way Argo CD and Flux would (the chart
with the real Helm library, directories as the tools read them), every object's namespace, CRD, queue and
priority class exists in an earlier step; retries and timeouts are bounded; the health rules mean what
docs/gitops.md says when evaluated (Flux's CEL with a CEL engine, in Flux's order; Argo CD's Lua in
test_argocd_health.py)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_helpers import CHART, ROOT

GITOPS = ROOT / "examples" / "gitops"
PIPELINE = ROOT / "examples" / "llava-ov-1.5"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _manifests(directory: Path, recursive: bool) -> list[dict[str, Any]]:
    """What a GitOps tool applies from a directory: a kustomization.yaml's resources, else every YAML file
    (Argo CD: this directory only; Flux: the whole tree)."""
    kustomization = directory / "kustomization.yaml"
    if kustomization.exists():
        out = []
        for res in yaml.safe_load(kustomization.read_text())["resources"]:
            target = directory / res
            out += _manifests(target, recursive) if target.is_dir() else _docs(target)
        return out
    files = sorted(directory.rglob("*.yaml") if recursive else directory.glob("*.yaml"))
    return [d for f in files for d in _docs(f)]


def _seconds(duration: str) -> float:
    """A Go duration (Flux, Argo CD): 1h30m, 5m, 15s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@dataclass
class Step:
    """One unit a GitOps tool applies (an Argo CD Application, a Flux Kustomization) and what it creates."""

    name: str
    objects: list[dict[str, Any]]
    own_namespaces: set[str] = field(default_factory=set)  # created by the step itself before its objects
    before: set[str] = field(default_factory=set)  # steps done (applied and healthy) before this one starts


def _chart_objects(helm, values: dict, release: str, namespace: str) -> list[dict[str, Any]]:
    return helm.render(values, namespace=namespace, release=release)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "", obj["kind"]


def _convergence_problems(steps: dict[str, Step]) -> list[str]:
    """What would fail on an empty cluster (with only the prerequisites' CRDs installed: Kueue, Prometheus
    Operator): an object whose namespace, CRD, LocalQueue or PriorityClass no earlier step creates."""
    problems = []
    for step in steps.values():
        earlier = [o for name in step.before for o in steps[name].objects]
        namespaces = {o["metadata"]["name"] for o in earlier if o["kind"] == "Namespace"} | step.own_namespaces
        crds = {(o["spec"]["group"], o["spec"]["names"]["kind"]) for o in earlier
                if o["kind"] == "CustomResourceDefinition"}
        queues = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in earlier if o["kind"] == "LocalQueue"}
        priorities = {o["metadata"]["name"] for o in earlier if o["kind"] == "PriorityClass"}
        for o in step.objects:
            what = f"{step.name}: {o['kind']}/{o['metadata']['name']}"
            ns = o["metadata"].get("namespace")
            if ns and ns not in namespaces:
                problems.append(f"{what}: namespace {ns} is created by no earlier step")
            group, kind = _key(o)
            if group == "vlmops.dev" and (group, kind) not in crds:
                problems.append(f"{what}: its CRD is installed by no earlier step")
            sched = (o.get("spec") or {}).get("scheduling") or {} if group == "vlmops.dev" else {}
            if sched.get("queueName") and (ns, sched["queueName"]) not in queues:
                problems.append(f"{what}: LocalQueue {ns}/{sched['queueName']} is created by no earlier step")
            if sched.get("priorityClassName") and sched["priorityClassName"] not in priorities:
                problems.append(f"{what}: PriorityClass {sched['priorityClassName']} is created by no earlier step")
    return problems


def _watched(steps: dict[str, Step]) -> set[str]:
    """Namespaces the operator watches: those its Roles are rendered into (watch.allNamespaces=false)."""
    return {o["metadata"]["namespace"] for s in steps.values() for o in s.objects
            if o["kind"] == "RoleBinding" and o["metadata"]["name"].endswith("-operator")}


def _storage_problems(steps: dict[str, Step]) -> list[str]:
    """Pipeline CRs without spec.storage take the chart's jobs.storage (the operator's config): one of the
    two must name the credentials Secret."""
    configs = [yaml.safe_load(o["data"]["config.yaml"]) for s in steps.values() for o in s.objects
               if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {})]
    assert len(configs) == 1
    default = (configs[0].get("storage") or {}).get("secretName")
    return [f"{cr['kind']}/{cr['metadata']['name']}: no spec.storage and no chart jobs.storage.secretName"
            for cr in _manifests(PIPELINE, recursive=True)
            if not ((cr["spec"].get("storage") or {}).get("secretName") or default)]


def _pipeline_namespaces() -> set[str]:
    return {d["metadata"]["namespace"] for d in _manifests(PIPELINE, recursive=True)}


# ---------------------------------------------------------------------------------------------- Argo CD


def _argo_apps() -> dict[str, dict[str, Any]]:
    root = _docs(GITOPS / "argocd" / "root.yaml")
    assert [d["kind"] for d in root] == ["Application"], "root.yaml is the one Application applied by hand"
    apps_dir = ROOT / root[0]["spec"]["source"]["path"]
    apps = {d["metadata"]["name"]: d for d in _manifests(apps_dir, recursive=False)}
    assert apps and all(a["kind"] == "Application" for a in apps.values())
    return {root[0]["metadata"]["name"]: root[0], **apps}


def _wave(app: dict[str, Any]) -> int:
    return int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


@pytest.fixture(scope="module")
def argo_steps(helm) -> dict[str, Step]:
    apps = _argo_apps()
    root = next(iter(apps))
    steps = {}
    for name, app in list(apps.items())[1:]:
        src, dest = app["spec"]["source"], app["spec"]["destination"]
        if "helm" in src:
            objs = _chart_objects(helm, src["helm"].get("valuesObject") or {}, src["helm"].get("releaseName", name),
                                  dest["namespace"])
        else:
            objs = _manifests(ROOT / src["path"], recursive=False)
        # Argo CD applies a sync's Namespaces (and the destination, with CreateNamespace) before the rest
        own = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
        if "CreateNamespace=true" in app["spec"]["syncPolicy"].get("syncOptions", []):
            own.add(dest["namespace"])
        steps[name] = Step(name, objs, own)
    # waves: a wave starts once every lower wave is Synced and Healthy (root's children, argocd-cm health)
    for name, step in steps.items():
        step.before = {n for n in steps if _wave(apps[n]) < _wave(apps[name])}
    assert root not in steps
    return steps


def test_argocd_app_of_apps_converges_from_an_empty_cluster(argo_steps):
    assert not _convergence_problems(argo_steps), "\n".join(_convergence_problems(argo_steps))


def test_argocd_the_operator_watches_the_pipelines_namespace(argo_steps):
    assert _pipeline_namespaces() <= _watched(argo_steps)
    assert not _storage_problems(argo_steps)


def test_argocd_the_pipeline_is_one_wave_after_the_operator_with_no_waves_inside():
    apps = _argo_apps()
    pipeline = [a for a in apps.values() if (ROOT / a["spec"]["source"].get("path", "x")).resolve() == PIPELINE]
    assert len(pipeline) == 1
    (app,) = pipeline
    assert app["spec"]["syncPolicy"]["automated"]["prune"] is False
    assert "SkipDryRunOnMissingResource=true" in app["spec"]["syncPolicy"]["syncOptions"]
    for cr in _manifests(PIPELINE, recursive=False):  # a wave would wait days for the stage before it
        assert "argocd.argoproj.io/sync-wave" not in (cr["metadata"].get("annotations") or {}), cr["metadata"]
    assert _wave(app) == max(_wave(a) for a in apps.values())


def test_argocd_every_application_retries_with_a_bounded_backoff():
    for name, app in _argo_apps().items():
        policy = app["spec"]["syncPolicy"]
        assert policy.get("automated") is not None, name
        retry = policy["retry"]
        assert 1 <= retry["limit"] <= 20, name  # negative = forever: a broken sync would retry silently
        b = retry["backoff"]
        assert _seconds(b["duration"]) >= 5 and b["factor"] >= 1 and _seconds(b["maxDuration"]) <= 600, name


def test_argocd_waves_wait_on_child_health():
    """Without an Application health check Argo CD (>= 1.8) does not wait for a child between waves."""
    data = yaml.safe_load((GITOPS / "argocd" / "argocd-cm.yaml").read_text())["data"]
    assert "resource.customizations.health.argoproj.io_Application" in data
    assert len({_wave(a) for a in list(_argo_apps().values())[1:]}) == len(_argo_apps()) - 1  # one app per wave


def test_argocd_chart_values_are_valid():
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    charts = [a for a in _argo_apps().values() if "helm" in a["spec"]["source"]]
    assert len(charts) == 1
    assert (ROOT / charts[0]["spec"]["source"]["path"]).resolve() == CHART
    jsonschema.validate(charts[0]["spec"]["source"]["helm"]["valuesObject"], schema)


# ------------------------------------------------------------------------------------------------- Flux


def _flux_kustomizations() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _docs(GITOPS / "flux" / "kustomizations.yaml")}


def _flux_before(ks: dict[str, dict[str, Any]], name: str, seen: tuple[str, ...] = ()) -> set[str]:
    """Kustomizations Ready before `name` starts (dependsOn, transitively); fails on a cycle or a typo."""
    assert name not in seen, f"dependsOn cycle: {' -> '.join(seen + (name,))}"
    out: set[str] = set()
    for dep in ks[name]["spec"].get("dependsOn", []):
        assert dep["name"] in ks, f"{name} dependsOn unknown {dep['name']}"
        out |= {dep["name"]} | _flux_before(ks, dep["name"], seen + (name,))
    return out


@pytest.fixture(scope="module")
def flux_steps(helm) -> dict[str, Step]:
    ks = _flux_kustomizations()
    steps = {}
    for name, k in ks.items():
        docs = _manifests(ROOT / k["spec"]["path"], recursive=True)
        objs = [d for d in docs if d["kind"] != "HelmRelease"]
        for hr in (d for d in docs if d["kind"] == "HelmRelease"):
            assert (ROOT / hr["spec"]["chart"]["spec"]["chart"]).resolve() == CHART
            ns = hr["spec"].get("targetNamespace", hr["metadata"]["namespace"])
            objs += _chart_objects(helm, hr["spec"].get("values") or {}, hr["spec"].get("releaseName",
                                   hr["metadata"]["name"]), ns)
        # kustomize-controller applies a directory's Namespaces before the rest (helm-controller installs later)
        own = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
        steps[name] = Step(name, objs, own, _flux_before(ks, name))
    return steps


def test_flux_kustomizations_converge_from_an_empty_cluster(flux_steps):
    assert not _convergence_problems(flux_steps), "\n".join(_convergence_problems(flux_steps))


def test_flux_the_operator_watches_the_pipelines_namespace(flux_steps):
    assert _pipeline_namespaces() <= _watched(flux_steps)
    assert not _storage_problems(flux_steps)


def test_flux_timeouts_are_minutes_not_days():
    """kustomize-controller applies no new revision while a health check waits: timeouts stay short."""
    for name, k in _flux_kustomizations().items():
        spec = k["spec"]
        assert spec["wait"] is True, name
        assert _seconds(spec["timeout"]) <= 15 * 60, (name, spec["timeout"])
        assert 0 < _seconds(spec["retryInterval"]) <= _seconds(spec["interval"]), name


def test_flux_the_pipeline_never_prunes_and_health_checks_every_kind():
    from vlmops.kinds import KINDS

    (k,) = [k for k in _flux_kustomizations().values() if (ROOT / k["spec"]["path"]).resolve() == PIPELINE]
    assert k["spec"]["prune"] is False
    exprs = {e["kind"]: e for e in k["spec"]["healthCheckExprs"]}
    assert set(exprs) == set(KINDS)
    assert {e["apiVersion"] for e in exprs.values()} == {"vlmops.dev/v1alpha1"}


def test_flux_helmrelease_upgrades_on_every_revision_and_retries():
    import jsonschema

    (hr,) = [d for d in _manifests(GITOPS / "flux" / "operator", recursive=True) if d["kind"] == "HelmRelease"]
    spec = hr["spec"]
    assert spec["chart"]["spec"]["reconcileStrategy"] == "Revision"
    assert spec["install"]["remediation"]["retries"] >= 1 and spec["upgrade"]["remediation"]["retries"] >= 1
    assert _seconds(spec["timeout"]) <= 15 * 60
    jsonschema.validate(spec["values"], json.loads((CHART / "values.schema.json").read_text()))


def test_flux_source_includes_every_path_used():
    (repo,) = _docs(GITOPS / "flux" / "sources.yaml")
    kept = [line[2:].strip("/") for line in repo["spec"]["ignore"].splitlines() if line.startswith("!/")]
    paths = [k["spec"]["path"].lstrip("./") for k in _flux_kustomizations().values()]
    paths += [hr["spec"]["chart"]["spec"]["chart"].lstrip("./")
              for hr in _manifests(GITOPS / "flux" / "operator", recursive=True) if hr["kind"] == "HelmRelease"]
    for p in paths:
        assert any(p == k or p.startswith(k + "/") for k in kept), p


# Flux health: the CEL expressions, evaluated as kustomize-controller does (fluxcd/pkg runtime/cel,
# RFC-0009): observedGeneration != generation -> InProgress; then inProgress, failed, current in that
# order, the first true wins; none -> InProgress; an evaluation error -> the check keeps waiting (Unknown).


def _flux_status(expr: dict[str, str], obj: dict[str, Any]) -> str:
    import celpy

    status = obj.get("status") or {}
    if "observedGeneration" in status and status["observedGeneration"] != obj["metadata"].get("generation"):
        return "InProgress"
    env = celpy.Environment()
    activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
    for key, result in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if not expr.get(key):
            continue
        try:
            value = env.program(env.compile(expr[key])).evaluate(activation)
        except Exception:  # noqa: BLE001 - celpy raises for unbound names (no status yet)
            return "Unknown"
        if isinstance(value, celpy.CELEvalError):
            return "Unknown"
        if bool(value):
            return result
    return "InProgress"


def _cr(kind: str, status: dict | None, generation: int = 2) -> dict[str, Any]:
    obj = {"apiVersion": "vlmops.dev/v1alpha1", "kind": kind,
           "metadata": {"name": "x", "namespace": "vlm", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize("state, reason, want", [
    ("Waiting", "WaitingForInput", "Current"),  # accepted: waits for its input by itself
    ("Running", "Running", "Current"),
    ("Done", "Succeeded", "Current"),
    ("Failed", "JobFailed", "Failed"),
    ("Invalid", "InvalidSpec", "Failed"),
])
def test_flux_health_follows_the_operators_states(state, reason, want):
    from vlmops.conditions import with_state
    from vlmops.kinds import KINDS

    (k,) = [k for k in _flux_kustomizations().values() if k["spec"].get("healthCheckExprs")]
    for e in k["spec"]["healthCheckExprs"]:
        status = with_state({}, done_condition=KINDS[e["kind"]].done_condition, state=state, reason=reason,
                            message="m", generation=2, at="2026-11-27T00:00:00Z")
        assert _flux_status(e, _cr(e["kind"], status)) == want, (e["kind"], state)


def test_flux_health_waits_for_the_operator_to_observe_the_spec():
    from vlmops.conditions import with_state

    (k,) = [k for k in _flux_kustomizations().values() if k["spec"].get("healthCheckExprs")]
    for e in k["spec"]["healthCheckExprs"]:
        old = with_state({}, done_condition="Ready", state="Done", reason="Succeeded", message="", generation=1,
                         at="2026-11-27T00:00:00Z")
        assert _flux_status(e, _cr(e["kind"], old, generation=2)) == "InProgress"
        assert _flux_status(e, _cr(e["kind"], None)) in ("Unknown", "InProgress")
        no_conditions = {"observedGeneration": 2}  # observed, conditions not written yet: not Current
        assert _flux_status(e, _cr(e["kind"], no_conditions)) in ("Unknown", "InProgress")


# ---------------------------------------------------------------------------------------------- shared


def test_cluster_setup_is_exactly_what_the_pipeline_names():
    """Every queue and priority class the example's CRs name exists in examples/gitops/cluster (and no
    LocalQueue there is unused)."""
    crs = _manifests(PIPELINE, recursive=True)
    cluster = _manifests(GITOPS / "cluster", recursive=False)
    named = {(c["metadata"]["namespace"], c["spec"]["scheduling"]["queueName"]) for c in crs
             if (c["spec"].get("scheduling") or {}).get("queueName")}
    queues = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in cluster if o["kind"] == "LocalQueue"}
    assert named == queues
    cluster_queues = {o["metadata"]["name"] for o in cluster if o["kind"] == "ClusterQueue"}
    assert {o["spec"]["clusterQueue"] for o in cluster if o["kind"] == "LocalQueue"} <= cluster_queues
    flavors = {o["metadata"]["name"] for o in cluster if o["kind"] == "ResourceFlavor"}
    for cq in (o for o in cluster if o["kind"] == "ClusterQueue"):
        for group in cq["spec"]["resourceGroups"]:
            for flavor in group["flavors"]:
                assert flavor["name"] in flavors
                assert [r["name"] for r in flavor["resources"]] == group["coveredResources"]
    priorities = {c["spec"]["scheduling"]["priorityClassName"] for c in crs
                  if (c["spec"].get("scheduling") or {}).get("priorityClassName")}
    assert priorities <= {o["metadata"]["name"] for o in cluster if o["kind"] == "PriorityClass"}


def test_cluster_queues_admit_the_largest_stage():
    """Kueue admits a workload only whole: the training ClusterQueue (with what it can borrow in its cohort)
    must hold the largest stage's GPUs, and cover every resource the pods request (cpu, memory, GPUs)."""
    crs = _manifests(PIPELINE, recursive=True)
    cluster = {o["metadata"]["name"]: o for o in _manifests(GITOPS / "cluster", recursive=False)
               if o["kind"] == "ClusterQueue"}
    local = {o["metadata"]["name"]: o["spec"]["clusterQueue"] for o in _manifests(GITOPS / "cluster", recursive=False)
             if o["kind"] == "LocalQueue"}

    def gpus(cq: dict) -> int:
        return sum(int(r["nominalQuota"]) for g in cq["spec"]["resourceGroups"] for f in g["flavors"]
                   for r in f["resources"] if r["name"] == "nvidia.com/gpu")

    for c in crs:
        queue = (c["spec"].get("scheduling") or {}).get("queueName")
        if not queue:
            continue
        cq = cluster[local[queue]]
        covered = {r for g in cq["spec"]["resourceGroups"] for r in g["coveredResources"]}
        assert {"cpu", "memory"} <= covered, queue
        if c["kind"] == "VLMTrainingStage":
            need = c["spec"].get("nodes", 1) * c["spec"].get("gpusPerNode", 8)
            cohort = [q for q in cluster.values() if q["spec"].get("cohortName") == cq["spec"].get("cohortName")]
            assert c["spec"].get("gpuResource", "nvidia.com/gpu") in covered
            assert need <= sum(gpus(q) for q in cohort), (c["metadata"]["name"], need)
