"""Render the chart with the real Helm library and check what comes out."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from vlmops.builders.common import BuildContext

from chart_helpers import ALL_ON, CHART, ROOT, RenderError, find, one

BUILTIN_GROUPS = {"v1", "apps/v1", "rbac.authorization.k8s.io/v1", "apiextensions.k8s.io/v1", "networking.k8s.io/v1",
                  "policy/v1"}
K8S_VERSION = "1.31"


def test_helm_lint_passes_on_the_chart(helm):
    result = helm.lint()
    assert result["TotalChartsLinted"] == 1
    # helm-sdkpy returns lint texts empty offline: only severities are meaningful. 1 = INFO
    # (e.g. "icon is recommended"); 2 = WARNING and 4 = ERROR must not appear.
    severities = [m["Severity"] for m in result.get("Messages") or []]
    assert all(s <= 1 for s in severities), result
    assert not result.get("Errors"), result


@pytest.mark.parametrize("case", ["default", "all_on", "namespaced"])
def test_rendered_builtin_objects_validate_strictly(helm, case):
    import kubernetes_validate

    values = {"default": {}, "all_on": ALL_ON,
              "namespaced": {"watch": {"allNamespaces": False, "namespaces": ["ml-a", "ml-b"]}}}[case]
    objs = helm.render(values)
    checked = 0
    for o in objs:
        if o["apiVersion"] in BUILTIN_GROUPS:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            checked += 1
    assert checked >= 8


def test_the_default_render_holds_exactly_the_expected_objects(default_objs):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default_objs)
    assert kinds == sorted([
        ("ServiceAccount", "vlmops"), ("ConfigMap", "vlmops-config"), ("Deployment", "vlmops"),
        ("Service", "vlmops-metrics"),
        ("ClusterRole", "vlmops-operator"), ("ClusterRoleBinding", "vlmops-operator"),
        ("Role", "vlmops-leader-election"), ("RoleBinding", "vlmops-leader-election"),
        ("ClusterRole", "vlmops-edit"), ("ClusterRole", "vlmops-view"),
        ("CustomResourceDefinition", "balancedcorpora.vlmops.dev"),
        ("CustomResourceDefinition", "packeddatasets.vlmops.dev"),
        ("CustomResourceDefinition", "vlmtrainingstages.vlmops.dev"),
        ("CustomResourceDefinition", "evalsuites.vlmops.dev"),
        ("CustomResourceDefinition", "vlmrlstages.vlmops.dev"),
    ])
    # Monitoring CRs are opt-in (they need the Prometheus Operator CRDs).
    assert not find(default_objs, "ServiceMonitor") and not find(default_objs, "PrometheusRule")


def test_the_operator_deployment_is_hardened(default_objs):
    d = one(default_objs, "Deployment")
    spec = d["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    # /tmp writable despite the read-only root filesystem; config mounted where --config points.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/tmp"] == "tmp" and mounts["/etc/vlmops"] == "config"
    assert c["image"] == "ghcr.io/vlmops/vlmops-operator:0.1.0"


def _operator_args(objs):
    c = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return c["command"], c["args"]


def test_command_line_matches_operator_cli(helm, default_objs, monkeypatch):
    """The Deployment's command parses with the operator's own argparse (when vlmops.cli exists)."""
    command, args = _operator_args(default_objs)
    assert command == ["vlmops"]
    assert args == ["operator", "--all-namespaces", "--metrics-port", "9090", "--health-port", "8080",
                    "--config", "/etc/vlmops/config.yaml", "--resync-interval", "60", "--api-timeout", "30",
                    "--stall-after", "300", "--leader-election-namespace", "vlmops-system",
                    "--leader-election-id", "vlmops"]
    _, ns_args = _operator_args(helm.render({"watch": {"allNamespaces": False, "namespaces": ["ml-a", "ml-b"]}}))
    assert ns_args[:5] == ["operator", "--namespace", "ml-a", "--namespace", "ml-b"]
    _, rel_args = _operator_args(helm.render({"watch": {"allNamespaces": False}}, namespace="team-x"))
    assert rel_args[:3] == ["operator", "--namespace", "team-x"]
    # Parse them with the operator's own CLI, with the operator's run() replaced by a recorder.
    cli = pytest.importorskip("vlmops.cli")
    om = pytest.importorskip("vlmops.operator_main")
    calls = []
    monkeypatch.setattr(om, "run", lambda *a, **kw: calls.append(a))
    for a in (args, ns_args):
        assert cli.main(a) in (0, None)
    assert calls[0][:5] == ([], True, 9090, 8080, "/etc/vlmops/config.yaml")
    recorded = {}
    monkeypatch.setattr(om, "run", lambda *a, **kw: recorded.update(kw))
    cli.main(args)
    assert recorded == {"resync_interval": 60.0, "api_timeout": 30.0, "stall_after": 300.0,
                        "leader_election_namespace": "vlmops-system", "leader_election_id": "vlmops",
                        "lease_duration": 15}
    assert calls[1][:5] == (["ml-a", "ml-b"], False, 9090, 8080, "/etc/vlmops/config.yaml")


def test_config_file_loads_into_build_context(all_objs, tmp_path):
    cm = one(all_objs, "ConfigMap", "vlmops-config")
    cfg = yaml.safe_load(cm["data"]["config.yaml"])
    assert cfg == {
        "images": {"data": "ghcr.io/vlmops/vlmops-data:0.1.0", "dataGpu": "ghcr.io/vlmops/vlmops-data-gpu:0.1.0",
                   "train": "ghcr.io/vlmops/vlmops-train:0.1.0",
                   "eval": "ghcr.io/vlmops/vlmops-eval:0.1.0", "evalVllm": "ghcr.io/vlmops/vlmops-eval-vllm:0.1.0"},
        "storage": {"endpointURL": "http://minio.storage:9000", "region": "us-east-1", "secretName": "vlmops-s3"},
        "storagePrefix": "s3://vlm-data/runs",
        "jobServiceAccount": "vlmops-job",
        "resources": {"data": {"requests": {"cpu": "2", "memory": "8Gi"}},
                      "dataGpu": {"requests": {"cpu": "4", "memory": "32Gi"}},
                      "train": {"requests": {"cpu": "16", "memory": "128Gi"}},
                      "eval": {"requests": {"cpu": "4", "memory": "32Gi"}},
                      "evalVllm": {"requests": {"cpu": "8", "memory": "64Gi"}}},
        "scheduling": None,
        "ttlSecondsAfterFinished": 86400,
        "trainJobRuntime": "vlmops-torch",
        "policy": {"imagePrefixes": ["ghcr.io/vlmops/"], "storagePrefixes": ["s3://vlm-data/runs"],
                   "allowOverrides": ["tolerations", "nodeSelector", "scheduling", "labels", "annotations",
                                      "volumes", "volumeMounts", "affinity", "shmSize"],
                   "maxShards": 1024, "maxNodes": 128, "maxGpus": 1024},
    }
    om = pytest.importorskip("vlmops.operator_main")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    ctx = om.load_config(str(path))
    assert ctx.images["train"] == "ghcr.io/vlmops/vlmops-train:0.1.0"
    assert ctx.storage.endpoint_url == "http://minio.storage:9000" and ctx.storage.secret_name == "vlmops-s3"
    assert ctx.service_account == "vlmops-job"
    assert ctx.storage_prefix == "s3://vlm-data/runs"
    assert ctx.policy.storage_prefixes == ("s3://vlm-data/runs",) and ctx.policy.max_nodes == 128
    assert ctx.policy.allowed_overrides == {"tolerations", "nodeSelector", "scheduling", "labels", "annotations",
                                            "volumes", "volumeMounts", "affinity", "shmSize"}
    assert ctx.resources == BuildContext().resources and ctx.ttl_seconds_after_finished == 86400  # a day
    assert ctx.scheduling is None and ctx.train_job_runtime == "vlmops-torch"


def test_job_defaults_reach_the_build_context(helm, tmp_path):
    objs = helm.render({"jobs": {"scheduling": {"queueName": "team-a", "priorityClassName": "batch"},
                                 "ttlSecondsAfterFinished": None,
                                 "resources": {"data": {"requests": {"cpu": "500m", "memory": "1Gi"}}}},
                        "training": {"trainJob": {"runtimeName": "torch-gpu"}}})
    path = tmp_path / "config.yaml"
    path.write_text(one(objs, "ConfigMap", "vlmops-config")["data"]["config.yaml"])
    ctx = pytest.importorskip("vlmops.operator_main").load_config(str(path))
    assert ctx.scheduling.queue_name == "team-a" and ctx.scheduling.priority_class_name == "batch"
    assert ctx.ttl_seconds_after_finished is None and ctx.train_job_runtime == "torch-gpu"
    assert ctx.resources["data"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}
    assert ctx.resources["train"] == BuildContext().resources["train"]  # per image: the others stay


def test_default_config_matches_builder_defaults(default_objs, tmp_path):
    """With no values, the chart's job images are exactly the operator's built-in defaults."""
    builders = pytest.importorskip("vlmops.builders.common")
    cfg = yaml.safe_load(one(default_objs, "ConfigMap", "vlmops-config")["data"]["config.yaml"])
    assert cfg["images"] == builders.BuildContext().images
    assert cfg["storage"] is None and cfg["jobServiceAccount"] is None and cfg["storagePrefix"] is None


def test_job_images_follow_the_registry_tag_and_per_image_values(helm):
    objs = helm.render({"jobs": {"images": {"registry": "registry.local/ml/", "tag": "0.2.0",
                                            "eval": "registry.local/ml/eval@sha256:" + "a" * 64}}})
    cfg = yaml.safe_load(one(objs, "ConfigMap", "vlmops-config")["data"]["config.yaml"])
    assert cfg["images"] == {"data": "registry.local/ml/vlmops-data:0.2.0",
                             "dataGpu": "registry.local/ml/vlmops-data-gpu:0.2.0",
                             "train": "registry.local/ml/vlmops-train:0.2.0",
                             "eval": "registry.local/ml/eval@sha256:" + "a" * 64,
                             "evalVllm": "registry.local/ml/vlmops-eval-vllm:0.2.0"}


def test_config_change_rolls_the_operator(helm, default_objs):
    a = one(default_objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = one(helm.render({"jobs": {"images": {"tag": "9.9.9"}}}), "Deployment")
    assert b["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != a


def test_chart_versions_match_the_project_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert chart["appVersion"] == version


# -- CRDs ------------------------------------------------------------------------------------------
def test_crds_are_the_generated_ones_plus_keep(default_objs):
    for src in sorted((ROOT / "crds").glob("*.yaml")):
        want = yaml.safe_load(src.read_text())
        got = one(default_objs, "CustomResourceDefinition", want["metadata"]["name"])
        assert got["spec"] == want["spec"]
        assert got["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        for k, v in (want["metadata"].get("labels") or {}).items():
            assert got["metadata"]["labels"][k] == v
        # structural: every version has a schema, the status subresource and the vlmops category
        assert "vlmops" in got["spec"]["names"]["categories"]
        for v in got["spec"]["versions"]:
            assert v["schema"]["openAPIV3Schema"]["type"] == "object"
            assert v["subresources"] == {"status": {}}


def test_crds_can_be_left_out_or_not_kept(helm):
    assert not find(helm.render({"crds": {"install": False}}), "CustomResourceDefinition")
    objs = helm.render({"crds": {"keep": False, "annotations": {"team": "ml"}}})
    for crd in find(objs, "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in crd["metadata"]["annotations"]
        assert crd["metadata"]["annotations"]["team"] == "ml"


# -- monitoring ------------------------------------------------------------------------------------
def test_service_and_servicemonitor_select_the_operator(all_objs):
    dep = one(all_objs, "Deployment")
    svc = one(all_objs, "Service", "vlmops-metrics")
    sm = one(all_objs, "ServiceMonitor")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    assert ep["honorLabels"] is True  # per-CR `namespace` labels survive the scrape
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["vlmops-system"]}
    # the jobLabel (Service label) is what the alerts' up{job=...} uses
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "vlmops"


def test_the_podmonitor_targets_training_pods(helm, all_objs):
    pm = one(all_objs, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "vlmops", "vlmops.dev/kind": "VLMTrainingStage", "vlmops.dev/step": "train"}
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] == "metrics"
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_vlmops_dev_name"], "targetLabel": "name",
            "action": "replace"} in ep["relabelings"]
    ns = one(helm.render({"watch": {"allNamespaces": False, "namespaces": ["ml-a"]},
                          "monitoring": {"podMonitor": {"enabled": True}}}), "PodMonitor")
    assert ns["spec"]["namespaceSelector"] == {"matchNames": ["ml-a"]}


def test_the_prometheusrule_alerts_have_runbooks_and_known_metrics(all_objs):
    rule = one(all_objs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    names = {a["alert"] for a in alerts}
    assert {"VlmopsOperatorDown", "VlmopsReconcileErrors", "VlmopsChildJobFailed", "VlmopsTrainingStalled",
            "VlmopsResourceFailed"} <= names
    for a in alerts:
        assert set(a) <= {"alert", "expr", "for", "labels", "annotations"}
        assert a["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook_url"} <= set(a["annotations"])
        if "for" in a:
            assert re.fullmatch(r"\d+[smh]", a["for"])
        assert a["annotations"]["runbook_url"].endswith("#" + a["alert"].lower())


def test_the_dashboard_is_shipped_as_a_configmap(all_objs):
    cm = one(all_objs, "ConfigMap", "vlmops-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "vlmops.json").read_text())
    assert json.loads(cm["data"]["vlmops.json"]) == shipped


# -- values schema ---------------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"bogus": 1}, "additional properties 'bogus' not allowed"),
    ({"watch": {"allNamespaces": "yes"}}, "at '/watch/allNamespaces': got string, want boolean"),
    ({"watch": {"namespaces": "ml-a"}}, "at '/watch/namespaces': got string, want array"),
    ({"watch": {"namespaces": ["Not_A_Namespace"]}}, "/watch/namespaces/0"),
    ({"operator": {"image": {"pullPolicy": "Sometimes"}}}, "/operator/image/pullPolicy"),
    ({"operator": {"ports": {"metrics": "9090", "health": 8080}}}, "at '/operator/ports/metrics': got string, want integer"),
    ({"jobs": {"storage": {"endpointURL": "minio:9000"}}}, "/jobs/storage/endpointURL"),
    ({"jobs": {"storage": {"accessKey": "AKIA..."}}}, "additional properties 'accessKey' not allowed"),
    ({"monitoring": {"prometheusRule": {"stalledMinutes": 0}}}, "/monitoring/prometheusRule/stalledMinutes"),
    ({"monitoring": {"serviceMonitor": {"interval": "30"}}}, "/monitoring/serviceMonitor/interval"),
    ({"crds": {"install": 1}}, "at '/crds/install': got number, want boolean"),
])
def test_schema_rejects_bad_values_readably(helm, values, message):
    with pytest.raises(RenderError) as e:
        helm.render(values)
    text = str(e.value)
    assert "values don't meet the specifications of the schema" in text
    assert message in text, text


def test_values_yaml_is_valid_against_schema():
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


def test_the_servicemonitor_comes_with_its_service(helm):
    with pytest.raises(RenderError, match="needs monitoring.service.enabled=true"):
        helm.render({"monitoring": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}})


def test_network_policies_admit_only_the_operators_ports_and_job_pods_among_themselves(helm):
    import kubernetes_validate

    objs = helm.render({"networkPolicy": {"enabled": True},
                        "watch": {"allNamespaces": False, "namespaces": ["ml-a", "ml-b"]}})
    policies = find(objs, "NetworkPolicy")
    for p in policies:
        kubernetes_validate.validate(p, K8S_VERSION, strict=True)
    operator_np = one(objs, "NetworkPolicy", "vlmops-operator")
    deployment = one(objs, "Deployment", "vlmops")
    assert operator_np["spec"]["podSelector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert {port["port"] for rule in operator_np["spec"]["ingress"] for port in rule["ports"]} == {8080, 9090}
    jobs = [p for p in policies if p["metadata"]["name"] == "vlmops-jobs"]
    assert sorted(p["metadata"]["namespace"] for p in jobs) == ["ml-a", "ml-b"]
    for p in jobs:
        assert p["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "vlmops"}
        assert p["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/managed-by": "vlmops"}
    assert not find(helm.render({}), "NetworkPolicy")  # opt-in


def test_two_replicas_get_a_disruption_budget_and_a_rolling_update(helm):
    objs = helm.render({"operator": {"replicas": 2}})
    deployment = one(objs, "Deployment", "vlmops")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pdb = one(objs, "PodDisruptionBudget", "vlmops")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert not find(helm.render({}), "PodDisruptionBudget")
