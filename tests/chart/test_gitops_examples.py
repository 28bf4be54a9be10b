"""The GitOps examples point at things that exist: CRs in examples/, the chart and its values."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chart_helpers import CHART, ROOT

GITOPS = ROOT / "examples" / "gitops"


def _docs(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _crs_in(path: Path):
    out = {}
    for f in sorted(path.glob("*.yaml")):
        for d in _docs(f):
            if d.get("apiVersion", "").startswith("vlmops.dev/"):
                out[(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))] = d
    return out


def _flux_kustomizations():
    return {d["metadata"]["name"]: d for d in _docs(GITOPS / "flux" / "kustomizations.yaml")}


def test_flux_healthchecks_cover_every_cr_of_the_pipeline():
    ks = _flux_kustomizations()["llava-ov-1-5"]
    path = ROOT / ks["spec"]["path"]
    crs = _crs_in(path)
    assert crs, f"no vlmops CRs under {path}"
    checks = {(h["kind"], h["name"], h["namespace"]) for h in ks["spec"]["healthChecks"]}
    assert checks == set(crs), "healthChecks must list exactly the pipeline's CRs"
    for h in ks["spec"]["healthChecks"]:
        assert h["apiVersion"] == "vlmops.dev/v1alpha1"
    assert ks["spec"]["dependsOn"] == [{"name": "vlmops-operator"}]
    assert ks["spec"]["prune"] is False


def test_flux_cel_health_expressions_name_real_conditions():
    ks = _flux_kustomizations()["llava-ov-1-5"]
    kinds = pytest.importorskip("vlmops.kinds").KINDS
    for e in ks["spec"]["healthCheckExprs"]:
        done = kinds[e["kind"]].done_condition
        assert f"c.type == '{done}'" in e["current"] and "c.type == 'Stalled'" in e["failed"]


def test_flux_operator_paths_and_helm_values_are_valid():
    import jsonschema

    ks = _flux_kustomizations()["vlmops-operator"]
    path = ROOT / ks["spec"]["path"].lstrip("./")
    assert path.is_dir()
    (hr,) = [d for d in _docs(path / "helmrelease.yaml") if d["kind"] == "HelmRelease"]
    assert (ROOT / hr["spec"]["chart"]["spec"]["chart"]).resolve() == CHART
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(hr["spec"]["values"], schema)


def test_argocd_applications_point_at_chart_and_pipeline():
    import jsonschema

    apps = {d["metadata"]["name"]: d for d in _docs(GITOPS / "argocd" / "applications.yaml")}
    chart_app, pipeline = apps["vlmops"], apps["llava-ov-1-5"]
    assert (ROOT / chart_app["spec"]["source"]["path"]).resolve() == CHART
    jsonschema.validate(chart_app["spec"]["source"]["helm"]["valuesObject"],
                        json.loads((CHART / "values.schema.json").read_text()))
    assert _crs_in(ROOT / pipeline["spec"]["source"]["path"])
    assert "SkipDryRunOnMissingResource=true" in pipeline["spec"]["syncPolicy"]["syncOptions"]


def test_the_argocd_health_configmap_is_generated():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "charts" / "sync_argocd.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
