"""The local runner runs a stage's TrainJob like its PyTorchJob: the same torchrun command, environment
and world size, pods labelled so the reconciler finds the result, a TrainJob status it reads."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from vlmops import childstate, results
from vlmops.builders import BuildContext
from vlmops.builders.training_stage import trainjob_pod_patch
from vlmops.builders.uris import resolve_uris
from vlmops.kinds import build, planned_status
from vlmops.local.kube import LocalKube, _launcher
from vlmops.local.state import Workdir
from vlmops.manifests import with_defaults
from vlmops_contract.result import TERMINATION_LOG_ENV

REPO = Path(__file__).resolve().parents[2]


def _stage_children():
    docs = [with_defaults(d) for d in yaml.safe_load_all((REPO / "examples/quickstart/pipeline.yaml").read_text()) if d]
    for d in docs:
        d["spec"] = resolve_uris(d["spec"], "file:///tmp/qs")
        d["metadata"].update(uid="u", namespace="default")
    ready = {(d["kind"], d["metadata"]["name"]): {**d, "status": planned_status(d)} for d in docs}
    stage = next(d for d in docs if d["metadata"]["name"] == "qs-stage-2")
    out = {}
    for runtime in ("PyTorchJob", "TrainJob"):
        s = copy.deepcopy(stage)
        s["spec"]["runtime"] = runtime
        out[runtime] = build(s, ready, BuildContext()).steps[0].manifest
    return out


def test_a_trainjob_launches_what_the_pytorchjob_launches():
    kids = _stage_children()
    (pc, pworld, plabels), (tc, tworld, tlabels) = _launcher(kids["PyTorchJob"]), _launcher(kids["TrainJob"])
    assert tc["command"] == pc["command"] and tc["image"] == pc["image"] and tworld == pworld
    assert sorted(e["name"] for e in tc["env"]) == sorted(e["name"] for e in pc["env"])
    assert tlabels == plabels


def test_a_trainjob_runs_locally_and_its_result_is_read(tmp_path):
    tj = _stage_children()["TrainJob"]
    result = '{"vlmopsResult": {"progress": {"step": 3}}}'
    tj["spec"]["trainer"]["command"] = ["python", "-c", f"import os; open(os.environ['{TERMINATION_LOG_ENV}'], 'w')"
                                        f".write({result!r})"]
    kube = LocalKube(Workdir(tmp_path))
    created = kube.create_child(tj)
    assert childstate.state(created).phase == "Running"
    done = kube.execute(created)
    assert childstate.state(done).phase == "Succeeded"
    labels = trainjob_pod_patch(tj)["metadata"]["labels"]
    pods = kube.list_pods("default", {k: v for k, v in labels.items() if k.startswith("vlmops.dev/")})
    assert results.from_pods(pods) == {"progress": {"step": 3}}
    tj["spec"]["trainer"]["command"] = ["python", "-c", "import sys; print('error: boom'); sys.exit(2)"]
    failed = kube.execute(kube.create_child(tj))
    state = childstate.state(failed)
    assert state.phase == "Failed" and "error: boom" in state.message
