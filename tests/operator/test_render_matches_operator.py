"""`vlmops render --config` prints exactly what the operator creates.

The chart is rendered with Helm from a values file; the real operator runs against the emulated API
server with the resulting ConfigMap's config.yaml and the recipe's CRs (our test plays the Job and
PyTorchJob controllers until every CR is done). Then `vlmops render` runs on the same CRs as the
cluster holds them (uid, status: the same upstream statuses the operator read), once with the values
file and once with the operator's config file. Every child the operator created, less what the API
server sets, must be byte-for-byte the YAML render prints for it.
"""
from __future__ import annotations

import copy
import difflib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from operator_harness import REPO, OperatorProcess
from pipeline_driver import Cluster, example_docs

sys.path.insert(0, str(REPO / "tests" / "chart"))
from chart_helpers import Helm, one  # noqa: E402

NAMESPACE = "rendered"
VALUES = {
    "jobs": {"images": {"registry": "registry.example/ml", "tag": "1.2.3"},
             "serviceAccountName": "vlm-jobs",
             # an address that refuses at once: the progress timer's reads fail fast
             "storage": {"endpointURL": "http://127.0.0.1:1", "region": "eu-west-1", "secretName": "s3-creds",
                         "prefix": "s3://vlm-data/team-a"},
             "scheduling": {"priorityClassName": "batch-low"},
             "resources": {"data": {"requests": {"cpu": "3"}}}},
    "policy": {"extraStoragePrefixes": ["s3://vlm-data/", "s3://vlm-ckpt/", "s3://vlm-eval/", "s3://vlm-models/"]},
}
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")
NOT_CHILDREN = {"Pod", "Event", "Namespace", "Lease"}


def _crs() -> list[dict[str, Any]]:
    """The recipe with the chart's defaults in play: no spec.storage (the chart's storage applies) and
    one relative location (joined onto jobs.storage.prefix by operator and render alike)."""
    docs = example_docs(NAMESPACE)
    for d in docs:
        d["spec"].pop("storage", None)
        if "tokenizer" in d["spec"]:  # a local path: outside any storage policy (the chart sets one here)
            d["spec"]["tokenizer"] = "s3://vlm-models/Qwen3-8B-Base/"
    ev = next(d for d in docs if d["kind"] == "EvalSuite")
    ev["spec"]["output"]["uri"] = "evals/stage-2/"
    return docs


@pytest.fixture(scope="module")
def config_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("config")
    helm = Helm()
    try:
        cm = one(helm.render(VALUES), "ConfigMap", "vlmops-config")
    finally:
        helm.close()
    (d / "values.yaml").write_text(yaml.safe_dump(VALUES))
    (d / "config.yaml").write_text(cm["data"]["config.yaml"])
    return {"values": d / "values.yaml", "config": d / "config.yaml"}


def _children(emulator) -> dict[str, dict[str, Any]]:
    """Every object in the namespace the operator labelled as its own, as the API server stores it."""
    emu = emulator.emulator
    out = {}
    for res, kind in list(emu._kinds.items()):
        if kind in NOT_CHILDREN:
            continue
        key = f"{res.group}/{res.version}/{res.plural}" if res.group else f"{res.version}/{res.plural}"
        for obj in emulator.objects(key, NAMESPACE):
            if (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "vlmops" \
                    and obj.get("apiVersion") != "vlmops.dev/v1alpha1":
                out[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    return out


def _as_created(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.pop("status", None)
    for k in SERVER_SET:
        out["metadata"].pop(k, None)
    return out


@pytest.fixture(scope="module")
def pipeline(api_client, emulator, kubeconfig_path, config_files):
    """Run the recipe through the operator; the children as created (before anything patched them)."""
    emulator.seed("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    op = OperatorProcess(kubeconfig_path, Path(tempfile.mkdtemp(prefix="vlmops-operator-render-")), [NAMESPACE],
                         extra_args=["--config", str(config_files["config"])]).start()
    c = Cluster(api_client, NAMESPACE)
    crs = _crs()
    try:
        for d in crs:
            c.create(d)
        created: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while not (created and c.all_done()):
            assert time.monotonic() < deadline, f"pipeline stuck after {sorted(created)}\n{op.log_tail()}"
            stalled = {n: c.condition(k, n, "Stalled") for k, n in ((d["kind"], d["metadata"]["name"]) for d in crs)}
            assert not [x for x in stalled.values() if x.get("status") == "True"], stalled
            new = {k: v for k, v in _children(emulator).items() if k not in created}
            for key, child in new.items():
                created[key] = _as_created(child)
            for key, child in new.items():
                if child["kind"] in ("Job", "PyTorchJob"):
                    c.finish(child)
            if not new:
                time.sleep(0.1)
        stored = {(d["kind"], d["metadata"]["name"]): c.get(d["kind"], d["metadata"]["name"]) for d in crs}
    finally:
        op.stop()
    return {"created": created, "crs": stored}


def _render(crs_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'jobs'}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "vlmops", "render", "-f", str(crs_file), *args],
                          env=env, capture_output=True, text=True, cwd=REPO)


def _documents(out: str) -> dict[str, str]:
    """`Kind/name` -> the YAML render printed for it (its `# CR step` comment line removed)."""
    docs = {}
    for part in out.split("---\n"):
        text = "".join(line for line in part.splitlines(keepends=True) if not line.startswith("#"))
        obj = yaml.safe_load(text)
        assert obj, f"render printed no manifest in:\n{part}"
        docs[f"{obj['kind']}/{obj['metadata']['name']}"] = text
    return docs


@pytest.fixture(scope="module")
def crs_file(pipeline, tmp_path_factory) -> Path:
    """The CRs as `kubectl get -o yaml` shows them: the operator's statuses (the upstream statuses it
    read), the uid its children's ownerReferences name."""
    crs = []
    for obj in pipeline["crs"].values():
        meta = obj["metadata"]
        crs.append({"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                    "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation")},
                    "spec": obj["spec"], "status": obj["status"]})
    path = tmp_path_factory.mktemp("crs") / "crs.yaml"
    path.write_text(yaml.safe_dump_all(crs, sort_keys=False))
    return path


def test_render_prints_byte_for_byte_what_the_operator_created(pipeline, config_files, crs_file):
    from_values = _render(crs_file, "--config", str(config_files["values"]))
    from_config = _render(crs_file, "--config", str(config_files["config"]))
    assert from_values.returncode == 0, from_values.stderr
    assert from_config.stdout == from_values.stdout, "the values file and the operator's config render differently"

    rendered = _documents(from_values.stdout)
    operator = {key: yaml.safe_dump(obj, sort_keys=False) for key, obj in pipeline["created"].items()}
    assert sorted(rendered) == sorted(operator)
    assert len(operator) == 22
    for key in operator:
        assert rendered[key] == operator[key], key + ":\n" + "".join(difflib.unified_diff(
            operator[key].splitlines(keepends=True), rendered[key].splitlines(keepends=True), "operator", "render"))
    # the chart's defaults are in them (what render without --config cannot know)
    job = pipeline["created"]["Job/stage-2-eval-eval-g1"]
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert pod["serviceAccountName"] == "vlm-jobs" and pod["priorityClassName"] == "batch-low"
    assert pod["containers"][0]["image"] == "registry.example/ml/vlmops-eval:1.2.3"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://127.0.0.1:1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    assert "s3://vlm-data/team-a/evals/stage-2" in yaml.safe_dump(job)
    retrieve = pipeline["created"]["Job/mid-training-85m-retrieve-g1"]
    assert retrieve["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "3"


def test_render_without_the_config_refuses_what_the_operator_would(crs_file):
    """Without the chart's storage prefix the eval's relative output is an error, as it would stall
    the CR on a cluster without one."""
    r = _render(crs_file)
    assert r.returncode == 1 and "EvalSuite/stage-2-eval: spec.output.uri: relative location" in r.stderr, r.stderr
