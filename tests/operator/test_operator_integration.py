"""The real operator process against the emulated API server (issue 2, item 6).

One operator (`python -m vlmops operator --namespace ...`) serves all tests of this module; the
pipeline test kills it with SIGKILL mid-pipeline and starts a new one. CRs go in through the
official `kubernetes` client; the tests play the Job/PyTorchJob controllers (pipeline_driver).
"""
from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from kubernetes.client.rest import ApiException

from operator_harness import TEST_UA, wait_for
from pipeline_driver import DONE, Cluster, example_docs
from vlmops.kinds import references

pytestmark = pytest.mark.usefixtures("operator")


def _operator_requests(emulator, since: float = 0.0, until: float | None = None):
    return [r for r in emulator.records()
            if r.at >= since and (until is None or r.at < until) and not r.user_agent.startswith(TEST_UA)]


# -- a bad spec ---------------------------------------------------------------------------------
def test_bad_spec_stalls_with_field_path_and_no_children(api_client, emulator):
    c = Cluster(api_client, "bad")
    bc = example_docs("bad")[0]
    bc["metadata"]["name"] = "both-thresholds"
    bc["spec"]["balancing"]["threshold"] = 20000  # and targetSamples: exactly one is allowed
    c.create(bc)
    stalled = wait_for(lambda: c.condition("BalancedCorpus", "both-thresholds", "Stalled").get("status") == "True"
                       and c.condition("BalancedCorpus", "both-thresholds", "Stalled"), what="Stalled=True")
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.balancing" in stalled["message"] and "targetSamples" in stalled["message"]
    assert stalled["observedGeneration"] == 1
    obj = c.get("BalancedCorpus", "both-thresholds")
    assert obj["status"]["phase"] == "Failed"
    assert c.condition("BalancedCorpus", "both-thresholds", "Ready")["status"] == "False"
    assert c.children() == []
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in c.events())
    assert "vlmopsResult" not in str(obj.get("status")) and "reconcile-bc" not in str(obj.get("status"))


# -- a failed child -----------------------------------------------------------------------------
def test_failed_child_fails_the_cr_with_the_reason(api_client, emulator):
    c = Cluster(api_client, "fail")
    pds = next(d for d in example_docs("fail") if d["metadata"]["name"] == "llava-558k-8k")
    c.create(pds)
    first = wait_for(lambda: c.children(), what="first child")
    assert [j["metadata"]["name"] for j in first] == ["llava-558k-8k-lengths-g1"]
    c.finish(first[0], ok=False)
    wait_for(lambda: c.get("PackedDataset", "llava-558k-8k").get("status", {}).get("phase") == "Failed",
             what="phase Failed")
    stalled = c.condition("PackedDataset", "llava-558k-8k", "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "ChildFailed"
    assert "llava-558k-8k-lengths-g1" in stalled["message"] and "BackoffLimitExceeded" in stalled["message"]
    assert "error: source.uri: no parquet files" in stalled["message"]  # the job's own last line
    assert c.condition("PackedDataset", "llava-558k-8k", "Ready")["status"] == "False"
    time.sleep(0.5)
    assert len(c.children()) == 1  # nothing after a failed step
    assert any(e["reason"] == "ChildFailed" and e["type"] == "Warning" for e in c.events())

    # Fixing the spec (a new generation) starts over with new children; Stalled clears.
    c.custom.patch_namespaced_custom_object("vlmops.dev", "v1alpha1", "fail", "packeddatasets", "llava-558k-8k",
                                            {"spec": {"shards": 4}})
    wait_for(lambda: "llava-558k-8k-lengths-g2" in [j["metadata"]["name"] for j in c.children()],
             what="the generation-2 child")
    wait_for(lambda: c.condition("PackedDataset", "llava-558k-8k", "Stalled").get("status") == "False",
             what="Stalled=False after the spec change")
    st = c.get("PackedDataset", "llava-558k-8k")["status"]
    assert st["phase"] == "Running" and st["observedGeneration"] == 2
    g2 = next(j for j in c.children() if j["metadata"]["name"].endswith("-g2"))
    assert g2["spec"]["completions"] == 4 and g2["metadata"]["labels"]["vlmops.dev/generation"] == "2"


# -- the full pipeline ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(api_client, emulator, operator):
    """Apply examples/llava-ov-1.5 at once, finish children wave by wave, restart mid-way."""
    c = Cluster(api_client, "vlm")
    docs = example_docs("vlm")
    crs = [(d["kind"], d["metadata"]["name"]) for d in docs]
    inputs = {(d["kind"], d["metadata"]["name"]): references(d) for d in docs}
    started = time.time()
    for d in docs:
        c.create(d)

    appeared: dict[str, int] = {}  # child name -> wave in which it was first seen
    finished: dict[str, int] = {}  # child name -> wave in which the test finished it
    parent: dict[str, tuple[str, str]] = {}
    waves: list[list[str]] = []
    restarted_at = None
    early_status = None
    wave = 0
    deadline = time.monotonic() + 45
    while True:
        if time.monotonic() > deadline:
            slow = [(r.method, r.path, round(r.seconds, 1)) for r in emulator.records()
                    if r.seconds > 0.5 and "watch=true" not in r.query]
            raise AssertionError(f"pipeline stuck; waves so far: {waves}\nslow requests: {slow[:20]}\n"
                                 f"(log: {operator.log_path})\n{operator.log_tail()}")
        children = c.children()
        new = [ch for ch in children if ch["metadata"]["name"] not in finished]
        if not new:
            if c.all_done():
                break
            time.sleep(0.1)
            continue
        wave += 1
        if wave == 1:
            # Only the roots started; everything downstream waits for its input.
            time.sleep(0.3)
            early_status = {n: c.get(k, n).get("status") for k, n in crs}
            new = [ch for ch in c.children() if ch["metadata"]["name"] not in finished]
        for ch in new:
            name = ch["metadata"]["name"]
            appeared.setdefault(name, wave)
            parent[name] = (ch["metadata"]["labels"]["vlmops.dev/kind"], ch["metadata"]["labels"]["vlmops.dev/name"])
        if wave == 6:  # mid-pipeline: kill the operator, let a child finish while it is down, restart
            operator.kill()
            restarted_at = wave
        for ch in new:
            c.finish(ch)
            finished[ch["metadata"]["name"]] = wave
        waves.append(sorted(ch["metadata"]["name"] for ch in new))
        if restarted_at == wave:
            operator.start()
    return {"cluster": c, "crs": crs, "inputs": inputs, "appeared": appeared, "finished": finished,
            "parent": parent, "waves": waves, "early_status": early_status, "seconds": time.time() - started,
            "restarted_at": restarted_at}


def test_pipeline_waits_then_runs_in_dependency_order(pipeline):
    p = pipeline
    early = p["early_status"]
    # Applied at once: downstream CRs wait with WaitingForInput, naming the input.
    for name in ("stage-1-5-mid-training", "stage-2-instruct", "stage-2-eval"):
        ready = next(c for c in early[name]["conditions"] if c["type"] == "Ready")
        assert early[name]["phase"] == "Pending" and ready["status"] == "False"
        assert ready["reason"] == "WaitingForInput" and "not found" not in ready["message"], ready
    assert "PackedDataset/mid-training-8k" in next(
        c for c in early["mid-training-8k"]["conditions"] if c["type"] == "Ready")["message"] or \
        "BalancedCorpus/mid-training-85m" in early["mid-training-8k"]["message"]
    assert sorted(p["waves"][0]) == ["instruct-22m-16k-lengths-g1", "llava-558k-8k-lengths-g1",
                                     "mid-training-85m-retrieve-g1"]
    # Dependency order: a CR's first child appears only after every child of its inputs finished,
    # and its own steps appear one at a time, each after the previous one finished.
    by_cr: dict[tuple[str, str], list[str]] = {}
    for child, cr in p["parent"].items():
        by_cr.setdefault(cr, []).append(child)
    for cr, children in by_cr.items():
        children.sort(key=lambda n: p["appeared"][n])
        for inp in p["inputs"][cr]:
            last_input = max(p["finished"][ch] for ch in by_cr[inp])
            assert p["appeared"][children[0]] > last_input, (cr, inp)
        for prev, nxt in zip(children, children[1:]):
            assert p["appeared"][nxt] > p["finished"][prev], (cr, prev, nxt)
    assert len(p["parent"]) == 22  # + the RL stage's select, merge, train and its EvalSuite


def test_pipeline_ends_ready_with_results_in_status(pipeline):
    c = pipeline["cluster"]
    for kind, name in pipeline["crs"]:
        obj = c.get(kind, name)
        st = obj["status"]
        assert st["phase"] == ("Ready" if DONE[kind] == "Ready" else "Succeeded"), (name, st)
        conds = {x["type"]: x for x in st["conditions"]}
        assert conds[DONE[kind]]["status"] == "True" and conds["Ready"]["status"] == "True"
        assert conds["Reconciling"]["status"] == "False" and conds["Stalled"]["status"] == "False"
        assert all(x["observedGeneration"] == 1 and x["lastTransitionTime"] for x in conds.values())
        assert st["observedGeneration"] == 1 and st["startTime"] and st["completionTime"]
        assert all(ch["phase"] == "Succeeded" for ch in st["children"])
        # kopf keeps nothing of ours in status (handler results, progress)
        assert not {"kopf", "reconcile-bc", "reconcile-pds"} & set(st)
    bc = c.get("BalancedCorpus", "mid-training-85m")["status"]
    assert bc["stats"]["selectedSamples"] == 85_000_000 and bc["stats"]["after"]["entropyBits"] == 16.9
    assert bc["output"]["uri"] == "s3://vlm-data/mid-training-85m/manifest.parquet"
    assert [ch["step"] for ch in bc["children"]] == ["retrieve", "balance"]
    pds = c.get("PackedDataset", "mid-training-8k")["status"]
    assert pds["stats"]["packingEfficiency"] == 0.987 and pds["stats"]["sequences"] == 240_000
    vts = c.get("VLMTrainingStage", "stage-2-instruct")["status"]
    assert vts["progress"]["step"] == 1000 and vts["checkpoint"]["latest"].endswith("iter_0001000/")
    assert vts["job"] == "stage-2-instruct-train-g1" and vts["hf"] == "s3://vlm-ckpt/stage-2-instruct/hf/"
    evs = c.get("EvalSuite", "stage-2-eval")["status"]
    assert (evs["passed"], evs["total"]) == (2, 2) and evs["lmmsEvalVersion"] == "0.7.3"
    assert {r["task"] for r in evs["results"]} >= {"mmmu_val", "chartqa"}


def test_restart_mid_pipeline_creates_no_duplicates(pipeline, emulator):
    assert pipeline["restarted_at"] is not None
    posts = [r for r in _operator_requests(emulator) if r.method == "POST"
             and re.search(r"/namespaces/vlm/(jobs|pytorchjobs)$", r.path)]
    assert Counter(r.status for r in posts) == Counter({201: 22}), Counter(r.status for r in posts)
    # children are never mutated after creation (Kueue owns runPolicy.suspend; nothing to adopt here)
    assert not [r for r in _operator_requests(emulator) if r.method in ("PATCH", "PUT")
                and re.search(r"/(jobs|pytorchjobs)/", r.path)]
    names = [ch["metadata"]["name"] for ch in pipeline["cluster"].children()]
    assert len(names) == len(set(names)) == 22
    # every child carries its owner (adoption/ownerReferences), pointing at the live CR uid
    c = pipeline["cluster"]
    for ch in c.children():
        kind, name = pipeline["parent"][ch["metadata"]["name"]]
        (ref,) = ch["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["controller"]) == (kind, name, True)
        assert ref["uid"] == c.get(kind, name)["metadata"]["uid"]


def test_operator_metrics_are_served_over_http(pipeline, operator):
    text = operator.metrics()

    def value(pattern: str) -> float:
        m = re.search("^" + pattern + r" ([0-9.e+-]+)$", text, re.M)
        assert m, f"{pattern} not in /metrics"
        return float(m.group(1))

    assert value(r'vlmops_reconcile_total\{controller="VLMTrainingStage",result="success"\}') >= 1
    assert value(r'vlmops_reconcile_time_seconds_count\{controller="PackedDataset"\}') >= 1
    assert value(r'vlmops_packing_efficiency\{name="mid-training-8k",namespace="vlm"\}') == 0.987
    assert value(r'vlmops_eval_passed\{namespace="vlm",suite="stage-2-eval"\}') == 2
    assert value(r'vlmops_resources\{kind="PackedDataset",phase="Ready"\}') == 3
    assert value(r'vlmops_resources\{kind="VLMTrainingStage",phase="Succeeded"\}') == 3
    assert "vlmops_reconcile_errors_total" in text and "vlmops_api_writes_total" in text


def test_steady_state_makes_no_writes(pipeline, emulator, operator):
    # Let in-flight work (the restarted operator's resume pass, the other tests' CRs) settle.
    def quiet() -> bool:
        writes = [r for r in _operator_requests(emulator) if r.is_write]
        return not writes or time.time() - writes[-1].at > 1.5
    wait_for(quiet, timeout=20, interval=0.2, what="the operator to settle")
    t0 = time.time()
    time.sleep(10)
    window = _operator_requests(emulator, t0, time.time())
    writes = [(r.method, r.path, r.status) for r in window if r.is_write]
    assert writes == [], writes
    # ...while it is alive and watching (watches re-open every --watch-timeout seconds)
    assert any(r.method == "GET" and "watch=true" in r.query for r in window)
    assert operator.healthy()
    # and nothing went wrong along the way (handler errors are retried by kopf and easy to miss)
    for n in range(1, operator.starts + 1):
        log = (operator.log_dir / f"operator-{n}.log").read_text()
        bad = [line for line in log.splitlines() if re.search(r"failed with an exception|Traceback|ERROR", line)]
        assert bad == [], f"operator-{n}.log: {bad[:5]}"


def test_child_creation_is_idempotent_against_the_server(api_client):
    """The same manifest created twice is a 409 the reconciler's create_child absorbs."""
    from vlmops.kube import Kube

    c = Cluster(api_client, "smoke")
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "twice", "namespace": "smoke", "labels": {"app": "x"}},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}
    kube = Kube(api_client)
    first = kube.create_child(job)
    again = kube.create_child(job)
    assert first["metadata"]["uid"] == again["metadata"]["uid"]
    with pytest.raises(ApiException):
        c.batch.create_namespaced_job("smoke", job)


def _verb(method: str, name: str | None, query: str) -> str:
    if method == "GET":
        return "watch" if "watch=true" in query else ("get" if name else "list")
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]


def test_required_permissions_cover_what_the_operator_did(pipeline, emulator):
    """Every request the operator process made (ours + kopf's) is allowed by REQUIRED_PERMISSIONS."""
    from vlmops.kube import REQUIRED_PERMISSIONS

    allowed = {(p["apiGroup"], p["resource"], p["verb"]) for p in REQUIRED_PERMISSIONS}
    used = set()
    for r in _operator_requests(emulator):
        m = re.fullmatch(r"/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
                         r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?",
                         r.path)
        if not m:
            continue  # discovery: /api, /apis, /apis/GROUP/VERSION (needs no RBAC)
        group = m["g"] or ""
        resource = m["res"] + (f"/{m['sub']}" if m["sub"] else "")
        used.add((group, resource, _verb(r.method, m["name"], r.query)))
    assert used, "no operator requests recorded"
    assert used - allowed == set(), sorted(used - allowed)
    # ...and nothing listed is unused, except what only other modes/events need
    optional = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")} \
        | {(g, r, "patch") for g, r, _ in allowed if r in ("jobs", "pytorchjobs")} \
        | {(g, r, "patch") for g, r, _ in allowed if g == "vlmops.dev" and "/" not in r} \
        | {(g, r, "update") for g, r, _ in allowed if r.endswith("/finalizers")} \
        | {(g, r, "delete") for g, r, _ in allowed if r in ("jobs", "pytorchjobs")} \
        | {(g, r, v) for g, r, v in allowed if r == "trainjobs" and v not in ("list", "watch")} \
        | {(g, r, v) for g, r, v in allowed if r == "leases"}  # leader election: off in this test's operator
    assert allowed - used - optional == set(), sorted(allowed - used - optional)
