"""The chart's ClusterTrainingRuntime (training.trainJob.installRuntime) is a valid Trainer v2.3 object whose
pods meet Pod Security "restricted", carry the metrics port the PodMonitor scrapes, and take the
runtime-level settings a TrainJob cannot patch."""
from __future__ import annotations

import kubernetes_validate
from kubeflow_trainer_api.models import TrainerV1alpha1ClusterTrainingRuntime

from vlmops.builders.common import TRAINJOB_RUNTIME
from vlmops.builders.training_stage import METRICS_PORT, TRAINJOB_NODE


def _runtime(objs):
    return [o for o in objs if o["kind"] == "ClusterTrainingRuntime"]


def test_no_runtime_unless_asked(default_objs):
    assert _runtime(default_objs) == []


def test_the_runtime_validates_and_matches_what_trainjobs_patch(helm):
    objs = helm.render({"training": {"trainJob": {"installRuntime": True, "priorityClassName": "training-high",
                                                  "hostNetwork": True}}})
    (rt,) = _runtime(objs)
    assert TrainerV1alpha1ClusterTrainingRuntime.from_dict(rt).to_dict() == rt  # no unknown or misplaced field
    assert rt["metadata"]["name"] == TRAINJOB_RUNTIME
    (rj,) = rt["spec"]["template"]["spec"]["replicatedJobs"]
    assert rj["name"] == TRAINJOB_NODE  # the replicated job each TrainJob's runtime patch names
    assert rj["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    pod = rj["template"]["spec"]["template"]
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                  "template": pod}, "1.33", strict=True)
    spec = pod["spec"]
    (c,) = spec["containers"]
    assert c["name"] == TRAINJOB_NODE and {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in c["ports"]
    assert c["image"].startswith("ghcr.io/vlmops/vlmops-train:")
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
    assert spec["priorityClassName"] == "training-high" and spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_the_operator_may_manage_trainjobs(default_objs):
    rules = [r for o in default_objs if o["kind"] in ("ClusterRole", "Role") for r in o.get("rules") or []]
    assert any("trainer.kubeflow.org" in r["apiGroups"] and "trainjobs" in r["resources"]
               and {"create", "get", "watch", "delete"} <= set(r["verbs"]) for r in rules)
