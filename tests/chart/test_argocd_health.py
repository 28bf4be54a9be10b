"""Run the Argo CD health Lua (charts/vlmops/argocd-health) against statuses the operator writes."""
from __future__ import annotations

import copy
import sys

import pytest

from chart_helpers import CHART, ROOT

sys.path.insert(0, str(ROOT / "charts"))
from sync_argocd import DONE, other_scripts, script, scripts  # noqa: E402

lupa = pytest.importorskip("lupa")

HEALTH_DIR = CHART / "argocd-health"
KINDS = {"BalancedCorpus": "Ready", "PackedDataset": "Ready", "VLMTrainingStage": "Succeeded",
         "EvalSuite": "Succeeded", "VLMRLStage": "Succeeded"}  # written out: the scripts are checked against an independent list
AT = "2026-11-27T00:00:00Z"


def run(lua_text: str, obj: dict) -> dict:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(lua_text)
    return {"status": result["status"], "message": result["message"]}


def health(kind: str, obj: dict) -> dict:
    return run(script(kind), obj)


def cr(kind: str, status: dict | None, generation: int = 1) -> dict:
    obj = {"apiVersion": "vlmops.dev/v1alpha1", "kind": kind,
           "metadata": {"name": "x", "namespace": "ml", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def operator_status(kind: str, state: str, reason: str, message: str, generation: int = 1) -> dict:
    """The status the operator itself writes (vlmops.conditions.with_state), or a faithful copy."""
    try:
        from vlmops.conditions import with_state
    except ImportError:  # pragma: no cover - the operator package is in the tree
        pytest.skip("vlmops.conditions not importable")
    return with_state({}, done_condition=KINDS[kind], state=state, reason=reason, message=message,
                      generation=generation, at=AT)


def test_one_script_per_kind_matching_the_api():
    from vlmops.kinds import KINDS as API_KINDS

    assert {k: v.done_condition for k, v in API_KINDS.items()} == KINDS == DONE
    for kind, done in KINDS.items():
        assert f'local DONE = "{done}"' in script(kind) and "{{" not in script(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_yet_is_progressing(kind):
    assert health(kind, cr(kind, None))["status"] == "Progressing"
    assert health(kind, cr(kind, {}))["status"] == "Progressing"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state, reason, message, want", [
    ("Waiting", "WaitingForInput", "PackedDataset/mid: not Ready", "Progressing"),
    ("Running", "Running", "step 120/70000", "Progressing"),
    ("Done", "Succeeded", "done", "Healthy"),
    ("Failed", "JobFailed", "BackoffLimitExceeded: pod exited 1", "Degraded"),
    ("Invalid", "InvalidSpec", "spec.parallelism: world size 6 not divisible by tensor*pipeline 4", "Degraded"),
])
def test_argocd_health_follows_the_operators_states(kind, state, reason, message, want):
    got = health(kind, cr(kind, operator_status(kind, state, reason, message)))
    assert got["status"] == want, got
    assert message in got["message"]
    if state == "Waiting":
        assert got["message"].startswith("WaitingForInput: ")


@pytest.mark.parametrize("kind", KINDS)
def test_new_generation_not_yet_observed_is_progressing(kind):
    """After a spec edit, a Healthy status from the old generation must not count."""
    status = operator_status(kind, "Done", "Succeeded", "done", generation=1)
    got = health(kind, cr(kind, status, generation=2))
    assert got["status"] == "Progressing" and "generation 2" in got["message"]


def test_done_condition_is_what_counts_for_stages():
    """A stage with Ready=True but Succeeded=False (hand-written status) is not Healthy."""
    status = {"observedGeneration": 1, "phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "reason": "X", "message": ""},
        {"type": "Succeeded", "status": "False", "reason": "Running", "message": "step 3"},
        {"type": "Reconciling", "status": "True", "reason": "Running", "message": "step 3"},
        {"type": "Stalled", "status": "False", "reason": "Healthy", "message": ""}]}
    assert health("VLMTrainingStage", cr("VLMTrainingStage", status))["status"] == "Progressing"
    assert health("PackedDataset", cr("PackedDataset", copy.deepcopy(status)))["status"] == "Healthy"


def test_failed_phase_without_conditions_is_degraded():
    got = health("EvalSuite", cr("EvalSuite", {"phase": "Failed", "observedGeneration": 1, "message": "boom"}))
    assert got == {"status": "Degraded", "message": "boom"}


def test_argocd_example_config_carries_the_scripts():
    """examples/gitops/argocd/argocd-cm.yaml must embed exactly the chart's Lua files."""
    import yaml

    cm = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd" / "argocd-cm.yaml").read_text())
    data = cm["data"]
    assert data == scripts()
    for kind in KINDS:
        key = f"resource.customizations.health.vlmops.dev_{kind}"
        assert data[key] == script(kind), key
    for name, body in other_scripts().items():
        assert data[f"resource.customizations.health.{name}"] == body == (HEALTH_DIR / f"{name}.lua").read_text()


def test_every_lua_file_is_named_for_the_kind_it_checks():
    """`<group>_<Kind>.lua` (Argo CD's key format), or the template every vlmops kind shares."""
    for path in HEALTH_DIR.glob("*.lua"):
        if path.name != "health.lua":
            group, _, kind = path.stem.rpartition("_")
            assert "." in group and kind[:1].isupper(), path.name
            assert f"resource.customizations.health.{path.stem}" in path.read_text(), path.name


# The app-of-apps (examples/gitops/argocd/root.yaml) waits between waves on its child Applications' health.
APP = "argoproj.io_Application"


def application(health: dict | None, sync: str | None = "Synced") -> dict:
    status: dict = {}
    if health is not None:
        status["health"] = health
    if sync is not None:
        status["sync"] = {"status": sync}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "vlmops"},
            "status": status}


@pytest.mark.parametrize("health_, sync, want", [
    (None, None, "Progressing"),  # just created by the parent: the next wave must wait
    ({"status": "Missing"}, "OutOfSync", "Progressing"),
    ({"status": "Progressing", "message": "Deployment rolling out"}, "Synced", "Progressing"),
    ({"status": "Healthy"}, "OutOfSync", "Progressing"),  # not applied yet: a stale Healthy must not count
    ({"status": "Healthy"}, "Synced", "Healthy"),
    ({"status": "Degraded", "message": "CrashLoopBackOff"}, "Synced", "Degraded"),
    ({"status": "Suspended"}, "Synced", "Suspended"),
    ({"status": "Unknown"}, "Synced", "Progressing"),
])
def test_child_application_health(health_, sync, want):
    body = other_scripts()[APP]
    got = run(body, application(health_, sync))
    assert got["status"] == want, got
    if health_ and health_.get("message"):
        assert health_["message"] in got["message"]


def test_application_without_status_is_progressing():
    got = run(other_scripts()[APP], {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                                     "metadata": {"name": "x"}})
    assert got["status"] == "Progressing"
