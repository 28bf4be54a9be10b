"""Manifests on a cluster carry the image digest of the pod that wrote them: the operator reads the
finished pod's `imageID` and records it in `status.output.image` and in the CR's own manifest
(`environment.imageID`, outside identity). Real operator process, emulated API server, manifests
on a moto S3 server."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from operator_harness import IMAGE_NAMESPACE, OperatorProcess, wait_for
from pipeline_driver import Cluster, example_docs
from vlmops_contract.identity import identity_of
from vlmops_jobs.common import lineage, storage

IMAGE = "ghcr.io/vlmops/vlmops-data@sha256:" + "ab" * 32


def _children(c: Cluster, cr: str, step: str) -> list[dict]:
    return [j for j in c.children() if j["metadata"]["labels"]["vlmops.dev/name"] == cr
            and j["metadata"]["labels"]["vlmops.dev/step"] == step]


@pytest.fixture
def operator_with_storage(kubeconfig_path, s3_server):
    """An operator started after the S3 server, so it has the storage environment the chart gives it."""
    op = OperatorProcess(kubeconfig_path, Path(tempfile.mkdtemp(prefix="vlmops-operator-img-")),
                         [IMAGE_NAMESPACE]).start()
    try:
        yield op
    finally:
        op.stop()


def test_the_final_pods_image_digest_goes_into_status_and_the_manifest(api_client, s3_bucket, operator_with_storage):
    c = Cluster(api_client, IMAGE_NAMESPACE)
    bc = example_docs(IMAGE_NAMESPACE)[0]
    assert bc["kind"] == "BalancedCorpus"
    out = f"{s3_bucket}/corpus"
    bc["spec"]["output"]["uri"] = out
    # what the balance job commits (a real manifest: identity over content, no image)
    manifest = lineage.build_manifest(kind="BalancedCorpus", step="balance",
                                      inputs={"source": [{"uri": f"{s3_bucket}/in/a.parquet", "digest": "sha256:1"}]},
                                      parameters={"seed": 0}, files={"selected/part-00000.parquet": "sha256:2"})
    digest = storage.write_json_atomic(f"{out}/manifest.json", manifest)
    c.create(bc)
    name = bc["metadata"]["name"]
    retrieve = wait_for(lambda: _children(c, name, "retrieve"), timeout=30, what="retrieve job")[0]
    c.finish(retrieve, image_id=IMAGE)
    balance = wait_for(lambda: _children(c, name, "balance"), timeout=30, what="balance job")[0]
    result = {"stats": {"inputSamples": 10, "selectedSamples": 5},
              "output": {"uri": out, "manifest": f"{out}/manifest.json", "digest": digest,
                         "identity": manifest["identity"]}}
    c.finish(balance, result=result, image_id=IMAGE)
    wait_for(lambda: c.is_done("BalancedCorpus", name), timeout=30, what="Ready")

    st = c.get("BalancedCorpus", name)["status"]["output"]
    stamped = json.loads(storage.read_bytes(f"{out}/manifest.json"))
    assert st["image"] == IMAGE and stamped["environment"]["imageID"] == IMAGE
    # the identity and everything else the job wrote are unchanged; status names the stored bytes
    assert stamped["identity"] == manifest["identity"] == identity_of(stamped) == st["identity"]
    assert {k: v for k, v in stamped.items() if k != "environment"} == \
        {k: v for k, v in manifest.items() if k != "environment"}
    assert st["digest"] == storage.sha256_uri(f"{out}/manifest.json") != digest


def test_a_result_naming_another_location_is_not_written_to(api_client, s3_bucket, operator_with_storage):
    c = Cluster(api_client, IMAGE_NAMESPACE)
    bc = example_docs(IMAGE_NAMESPACE)[0]
    bc["metadata"]["name"] = "elsewhere"
    bc["spec"]["output"]["uri"] = f"{s3_bucket}/mine"
    other = lineage.build_manifest(kind="BalancedCorpus", step="balance", inputs={}, parameters={}, files={})
    storage.write_json_atomic(f"{s3_bucket}/theirs/manifest.json", other)
    before = storage.read_bytes(f"{s3_bucket}/theirs/manifest.json")
    c.create(bc)
    retrieve = wait_for(lambda: _children(c, "elsewhere", "retrieve"), timeout=30, what="retrieve job")[0]
    c.finish(retrieve, image_id=IMAGE)
    balance = wait_for(lambda: _children(c, "elsewhere", "balance"), timeout=30, what="balance job")[0]
    c.finish(balance, result={"stats": {}, "output": {"uri": f"{s3_bucket}/theirs",
                                                      "manifest": f"{s3_bucket}/theirs/manifest.json"}},
             image_id=IMAGE)
    wait_for(lambda: c.is_done("BalancedCorpus", "elsewhere"), timeout=30, what="Ready")
    assert c.get("BalancedCorpus", "elsewhere")["status"]["output"]["image"] == IMAGE
    assert storage.read_bytes(f"{s3_bucket}/theirs/manifest.json") == before
