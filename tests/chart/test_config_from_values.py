"""`vlmops render/validate --config values.yaml` reads Helm values the way the chart does: for each set
of values, the operator's config Helm renders (ConfigMap config.yaml) equals the Python mapping's
(vlmops/config.py `config_from_values`), and so do the BuildContexts loaded from either file."""
from __future__ import annotations

from typing import Any

import pytest
import yaml
from chart_helpers import CHART, one

from vlmops.config import chart_values, config_from_values, app_version, helm_merge, load_config, load_context

# Every value under jobs and policy differs from the chart's default in at least one set (checked below).
VALUE_SETS: list[dict[str, Any]] = [
    {},
    {"jobs": {"images": {"registry": "registry.local/ml/", "tag": "0.2.0", "data": "registry.local/ml/data:7",
                         "train": "other.io/train:1", "eval": "registry.local/ml/eval@sha256:" + "a" * 64,
                         "evalVllm": "registry.local/ml/vllm:2", "dataGpu": "registry.local/ml/data-gpu:3"},
              "resources": {"data": {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}},
                            "train": {"limits": {"cpu": 32}}, "eval": {"requests": {"memory": "1Gi"}},
                            "evalVllm": {"requests": {"cpu": "3"}}, "dataGpu": {"requests": {"cpu": "5"}}},
              "scheduling": {"queueName": "team-a", "priorityClassName": "low", "schedulerName": "volcano"},
              "ttlSecondsAfterFinished": 600, "serviceAccountName": "vlm-jobs",
              "storage": {"endpointURL": "http://minio:9000", "region": "eu-west-1", "secretName": "s3",
                          "prefix": "s3://b/runs"}},
     "policy": {"extraImagePrefixes": ["docker.io/me/"], "extraStoragePrefixes": ["s3://other/"],
                "allowOverrides": ["env", "storage"], "maxShards": 7, "maxNodes": 3, "maxGpus": 9},
     "training": {"trainJob": {"runtimeName": "my-torch"}}},
    {"jobs": {"storage": {"region": "x"}, "ttlSecondsAfterFinished": None, "scheduling": {"queueName": "q"},
              "images": {"registry": "r.io"}},
     "policy": {"allowOverrides": [], "extraStoragePrefixes": ["s3://a/", "gs://b/"]}},
    {"jobs": {"storage": {"prefix": "s3://only/", "secretName": "creds"}, "ttlSecondsAfterFinished": 0,
              "resources": {"data": {"requests": {"memory": "2Gi"}}, "train": {"requests": {"cpu": 8, "memory": "1Ti"}},
                            "eval": {"requests": {"cpu": "500m"}}, "evalVllm": {"requests": {"memory": "16Gi"}},
                            "dataGpu": {"requests": {"memory": "24Gi"}}}}},
]


def _leaves(d: Any, path: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        return {k: v for key, sub in d.items() for k, v in _leaves(sub, f"{path}.{key}".lstrip(".")).items()}
    return {path: d}


def _rendered_config(helm, values: dict[str, Any]) -> str:
    return one(helm.render(values), "ConfigMap", "vlmops-config")["data"]["config.yaml"]


@pytest.mark.parametrize("values", VALUE_SETS, ids=range(len(VALUE_SETS)))
def test_the_python_mapping_is_what_the_chart_renders(helm, values, tmp_path):
    rendered = _rendered_config(helm, values)
    mapped = config_from_values(helm_merge(chart_values(CHART), values), app_version(CHART))
    assert mapped == yaml.safe_load(rendered)
    # the files users pass: a values file, or the ConfigMap's config.yaml; both give the operator's context
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    (tmp_path / "config.yaml").write_text(rendered)
    operator = load_config(str(tmp_path / "config.yaml"))
    assert load_context([str(tmp_path / "values.yaml")], CHART) == operator
    assert load_context([str(tmp_path / "config.yaml")], CHART) == operator


def test_every_value_the_config_reads_is_exercised():
    """A value added under jobs or policy must be added to VALUE_SETS, so the comparison covers it."""
    defaults = _leaves({k: chart_values(CHART)[k] for k in ("jobs", "policy")})
    changed = set()
    for values in VALUE_SETS:
        merged = _leaves({k: helm_merge(chart_values(CHART), values).get(k, {}) for k in ("jobs", "policy")})
        changed |= {k for k in defaults if merged.get(k, "<unset>") != defaults[k]}
    assert set(defaults) - changed == set()


def test_values_files_merge_in_order_like_helm(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"jobs": {"serviceAccountName": "a", "storage": {"region": "r"}}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"jobs": {"serviceAccountName": "b"}}))
    ctx = load_context([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")], CHART)
    assert ctx.service_account == "b" and ctx.storage.region == "r"
