"""docs/install.md and the README's cluster commands are right about the chart and the examples: every
value is documented, every `--set` is a valid value, the README's monitoring command labels what
kube-prometheus-stack selects, the named versions agree with the project's pins, the queues and priority
classes named are the example's; NOTES.txt says what was installed and points at docs that exist."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from md_read import ROOT, prose

INSTALL = ROOT / "docs" / "install.md"
README = ROOT / "README.md"
CHART = ROOT / "charts" / "vlmops"


def _leaves(node, prefix=""):
    """Dotted keys of values.yaml down to scalars, lists and empty maps (a map of free-form keys - labels,
    annotations, resources - counts as one key)."""
    if isinstance(node, dict) and node and not prefix.endswith(("labels", "Labels", "annotations", "resources")):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def _documented_keys() -> set[str]:
    """Keys in the first column of install.md's values table: `a.b.c` / `.d` (a sibling of the last full key)."""
    text = INSTALL.read_text()
    table = text[text.index("## Values"):]
    table = table[:table.index("\n## ", 1)]
    keys = set()
    for line in table.splitlines()[4:]:
        first = line.split("|")[1] if line.startswith("|") else ""
        parent = ""
        for key in re.findall(r"`([^`]+)`", first):
            if key.startswith("."):
                keys.add(parent + key)
            else:
                keys.add(key)
                parent = key.rsplit(".", 1)[0] if "." in key else ""
    return keys


def test_every_chart_value_is_in_the_install_guide():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = _documented_keys()
    missing = [k for k in _leaves(values) if k not in documented
               and not any(k.startswith(d + ".") or d.startswith(k + ".") for d in documented)]
    assert not missing, f"values missing from docs/install.md's table: {missing}"
    unknown = [k for k in documented if not _has_key(values, k)]
    assert not unknown, f"docs/install.md documents values the chart does not have: {unknown}"


def _has_key(values: dict, dotted: str) -> bool:
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _helm_commands(path: Path) -> list[str]:
    """`helm install|upgrade ... charts/vlmops ...` commands in the file's code blocks, continuation lines joined."""
    text = path.read_text()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n", " ", block)
        out += [line for line in joined.splitlines() if re.match(r"\s*helm (install|upgrade)\b.*charts/vlmops", line)]
    return out


def _scalar(text: str):
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.startswith("{") and text.endswith("}"):
        return [_scalar(v) for v in text[1:-1].split(",") if v]
    return text


def _set_values(command: str) -> dict:
    """The values of a command's --set flags (Helm's strvals for the forms the docs use)."""
    values: dict = {}
    for flag in re.findall(r"--set[= ]('[^']*'|\S+)", command):
        for item in re.findall(r"(?:[^,{]|\{[^}]*\})+", flag.strip("'")):
            key, _, raw = item.partition("=")
            node = values
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = _scalar(raw)
    return values


@pytest.mark.parametrize("doc", [README, INSTALL], ids=["README.md", "docs/install.md"])
def test_every_set_flag_is_a_valid_value(doc):
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    commands = _helm_commands(doc)
    assert commands, f"no helm install command in {doc.name}"
    for command in commands:
        values = _set_values(command)
        assert values, command
        jsonschema.validate(values, schema)


@pytest.mark.parametrize("doc", [README, INSTALL], ids=["README.md", "docs/install.md"])
def test_the_monitoring_commands_label_what_kube_prometheus_stack_selects(helm, doc):
    """kube-prometheus-stack's Prometheus selects ServiceMonitors/PodMonitors/PrometheusRules by the label
    release=<its release name>: each one a documented command creates must carry it."""
    from chart_helpers import find

    monitoring = [c for c in _helm_commands(doc) if "monitoring.serviceMonitor.enabled=true" in c]
    assert monitoring
    for command in monitoring:
        objs = helm.render(_set_values(command))
        kinds = [o for k in ("ServiceMonitor", "PodMonitor", "PrometheusRule") for o in find(objs, k)]
        assert kinds
        for o in kinds:
            assert o["metadata"]["labels"].get("release") == "kube-prometheus-stack", o["kind"]


def _pin(package: str) -> str:
    text = (ROOT / "requirements" / "base.txt").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)", text, re.M).group(1)


def test_versions_agree_with_the_project_pins_and_each_other():
    text = INSTALL.read_text()
    trainer = _pin("kubeflow-trainer-api")  # the TrainJob models the operator builds with
    assert f"manifests/overlays/manager?ref=v{trainer}" in text and f"--version {trainer}" in text
    assert f"Trainer v{trainer}" in text
    training = _pin("kubeflow-training")  # the PyTorchJob models
    assert f"manifests/overlays/standalone?ref=v{training}" in text and f"v{training} (`kubeflow.org/v1`)" in text
    kueue = re.search(r"charts/kueue --version (\S+)", text).group(1)
    values = (ROOT / "examples" / "gitops" / "prerequisites" / "kueue-values.yaml").read_text()
    assert f"charts/kueue --version {kueue}" in values
    assert f"| {kueue} (`kueue.x-k8s.io/v1beta2`)" in text
    api = {d["apiVersion"] for d in yaml.safe_load_all((ROOT / "examples/gitops/cluster/kueue.yaml").read_text())}
    assert api == {"kueue.x-k8s.io/v1beta2"}
    frameworks = yaml.safe_load(yaml.safe_load(values)["managerConfig"]["controllerManagerConfigYaml"])
    assert {"batch/job", "kubeflow.org/pytorchjob", "trainer.kubeflow.org/trainjob"} <= set(
        frameworks["integrations"]["frameworks"])


def test_the_queues_and_priority_classes_named_are_the_examples():
    text = prose(INSTALL.read_text())
    crs = [d for f in sorted((ROOT / "examples" / "llava-ov-1.5").glob("*.yaml"))
           for d in yaml.safe_load_all(f.read_text()) if d]
    names = {v for c in crs for k, v in (c["spec"].get("scheduling") or {}).items()
             if k in ("queueName", "priorityClassName")}
    assert names
    for name in names:
        assert f"`{name}`" in text, name
    claims = {c["spec"]["pod"]["volumes"][0]["persistentVolumeClaim"]["claimName"] for c in crs
              if (c["spec"].get("pod") or {}).get("volumes")}
    for claim in claims:
        assert f"`{claim}`" in text, claim


# NOTES.txt, rendered by Helm itself (the chart tests' harness, tests/chart/helm_render.py)

@pytest.fixture(scope="module")
def notes(helm):
    return helm.notes


def test_notes_say_what_was_installed_and_what_is_watched(notes):
    from vlmops.kinds import KINDS

    text = notes({})
    assert "release vlmops in namespace vlmops-system" in text
    assert "all namespaces" in text and "kubectl get vlmops -A" in text
    for kind in KINDS:
        assert kind in text
    assert "every CR needs spec.storage" in text
    text = notes({"watch": {"allNamespaces": False, "namespaces": ["vlm", "team-b"]},
                  "jobs": {"storage": {"secretName": "vlmops-s3"}},
                  "crds": {"install": False},
                  "training": {"trainJob": {"installRuntime": True}},
                  "monitoring": {"serviceMonitor": {"enabled": True}}})
    assert "vlm, team-b (a Role and RoleBinding in each" in text
    assert "kubectl -n vlm create secret generic vlmops-s3" in text and "kubectl get vlmops -n vlm" in text
    assert "kubectl apply --server-side -f crds/" in text
    assert "ClusterTrainingRuntime vlmops-torch" in text
    assert 'no "release" label' in text
    labelled = notes({"monitoring": {"additionalLabels": {"release": "kps"}, "serviceMonitor": {"enabled": True}}})
    assert "ServiceMonitor" in labelled and 'no "release" label' not in labelled


def test_notes_point_at_docs_that_exist(notes):
    text = notes({})
    paths = re.findall(r"/blob/v[^/]+/(\S+)", text)
    assert {"docs/install.md", "docs/api.md", "docs/gitops.md"} <= set(paths)
    for p in paths:
        assert (ROOT / p).exists(), p
    for p in re.findall(r"kubectl apply (?:--server-side )?-f (\S+)", text):
        assert (ROOT / p).exists(), p
