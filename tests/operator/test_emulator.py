"""The test-side layer over kmock behaves like an API server where the operator relies on it."""
from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

NS = "smoke"
GROUP, VERSION = "vlmops.dev", "v1alpha1"


def _bc(name: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BalancedCorpus", "metadata": {"name": name},
            "spec": {"source": {"uri": "s3://b/pool/", "idField": "id", "embeddingField": "e"}}}


def _raw(resp) -> dict:
    return json.loads(resp.data)


def test_create_stamps_metadata_and_answers_201(api_client):
    custom = client.CustomObjectsApi(api_client)
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, NS, "balancedcorpora", _bc("stamp"))
    assert obj is not None, "kubernetes>=36 returns None unless the server answers 201"
    meta = obj["metadata"]
    assert meta["uid"] and meta["resourceVersion"].isdigit() and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and meta["namespace"] == NS
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, "balancedcorpora", _bc("stamp"))
    assert e.value.status == 409


def test_generation_status_subresource_and_noop(api_client):
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "balancedcorpora", _bc("gen"))
    a = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "balancedcorpora", "gen",
                                              {"metadata": {"annotations": {"x": "1"}}, "status": {"phase": "X"}})
    assert a["metadata"]["generation"] == 1 and "status" not in a  # main resource ignores status
    b = custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, "balancedcorpora", "gen",
                                                     {"status": {"phase": "Running"}, "spec": {"shards": 9}})
    assert b["status"] == {"phase": "Running"} and "shards" not in b["spec"]  # status leaves spec alone
    assert b["metadata"]["generation"] == 1
    c = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "balancedcorpora", "gen", {"spec": {"shards": 4}})
    assert c["metadata"]["generation"] == 2 and c["status"] == {"phase": "Running"}
    d = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "balancedcorpora", "gen", {"spec": {"shards": 4}})
    assert d["metadata"]["resourceVersion"] == c["metadata"]["resourceVersion"]  # no-op: nothing written
    e = custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, "balancedcorpora", "gen",
                                                     {"status": {"phase": None}})
    assert "phase" not in e["status"]  # merge-patch null deletes


def test_json_patch_test_op_and_content_type(api_client):
    batch = client.BatchV1Api(api_client)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "jp", "labels": {"a": "1"}},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}
    made = _raw(batch.create_namespaced_job(NS, job, _preload_content=False))
    rv = made["metadata"]["resourceVersion"]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
           {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}]
    batch.patch_namespaced_job("jp", NS, ops)  # the client's default content type: json-patch+json
    with pytest.raises(ApiException) as e:
        batch.patch_namespaced_job("jp", NS, ops)  # stale resourceVersion
    assert e.value.status == 422
    # A dict body goes out as strategic-merge-patch (the client rewrites json-patch for non-lists);
    # the emulator approximates strategic merge by merge-patch.
    out = batch.patch_namespaced_job("jp", NS, {"metadata": {"labels": {"b": "2"}}})
    assert out.metadata.labels == {"a": "1", "b": "2"} and out.metadata.finalizers == ["x/y"]

def test_label_selectors_namespaces_and_discovery(api_client):
    core = client.CoreV1Api(api_client)
    for name, labels in (("p1", {"k": "a", "x": "1"}), ("p2", {"k": "b"}), ("p3", {"k": "a"})):
        core.create_namespaced_pod(NS, {"metadata": {"name": name, "labels": labels},
                                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                                        "status": {"phase": "Succeeded"}})
    names = lambda sel: sorted(p.metadata.name for p in core.list_namespaced_pod(NS, label_selector=sel).items)  # noqa
    assert names("k=a") == ["p1", "p3"]
    assert names("k==a,x=1") == ["p1"]
    assert names("k!=a") == ["p2"]
    assert names("x") == ["p1"] and names("!x") == ["p2", "p3"]
    assert core.read_namespaced_pod("p1", NS).status is None  # create drops status (subresource)
    core.patch_namespaced_pod_status("p1", NS, {"status": {"phase": "Succeeded"}},
                                     _content_type="application/merge-patch+json")
    assert core.read_namespaced_pod("p1", NS).status.phase == "Succeeded"
    assert NS in {n.metadata.name for n in core.list_namespace().items}
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert {"vlmops.dev", "batch", "kubeflow.org"} <= groups
    res = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION)
    assert {"balancedcorpora", "balancedcorpora/status", "evalsuites"} <= {r.name for r in res.resources}


def test_watch_from_resource_version_and_timeout(api_client, emulator):
    import time

    core = client.CoreV1Api(api_client)
    lst = core.list_namespaced_config_map(NS)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "cm1"}, "data": {"a": "1"}})
    started = time.monotonic()
    resp = core.list_namespaced_config_map(NS, watch=True, resource_version=lst.metadata.resource_version,
                                           timeout_seconds=1, _preload_content=False)
    events = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
    assert time.monotonic() - started < 5  # timeoutSeconds is honoured
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "cm1")]
