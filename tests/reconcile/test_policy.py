"""The platform's tenancy policy: each hole a CR author could use fails closed, naming the field."""
from __future__ import annotations

import copy

from fake_api import FakeKube
from pipeline_driver import example_docs

from vlmops import reconciler
from vlmops.builders import BuildContext
from vlmops.kinds import KINDS
from vlmops.policy import Policy

STRICT = Policy.from_config({
    "imagePrefixes": ["ghcr.io/vlmops/"], "storagePrefixes": ["s3://platform-bucket/vlmops/team-a"],
    "allowOverrides": [], "maxShards": 64, "maxNodes": 16, "maxGpus": 64})


def _stage() -> dict:
    doc = next(d for d in example_docs("ns") if d["metadata"]["name"] == "stage-1-alignment")
    doc["spec"]["checkpoint"]["uri"] = "s3://platform-bucket/vlmops/team-a/ckpt/stage-1"
    doc["spec"].pop("initFrom", None)
    return doc


def _violations(doc: dict, policy: Policy = STRICT) -> list[str]:
    kind = KINDS[doc["kind"]]
    return policy.violations(doc["spec"], kind.sizes(kind.spec.model_validate(doc["spec"])))


def test_locations_outside_the_storage_prefix_are_refused_however_they_are_spelled():
    for uri in ("s3://platform-bucket/vlmops/team-a/../../team-b/ckpt", "s3://other-bucket/ckpt",
                "file:///var/run/secrets/kubernetes.io/serviceaccount", "s3://platform-bucket/vlmops/team-ab/x",
                "http://127.0.0.1:8080/x"):
        doc = _stage()
        doc["spec"]["checkpoint"]["uri"] = uri
        (problem,) = [v for v in _violations(doc) if v.startswith("spec.checkpoint.uri")]
        assert repr(uri) in problem
    assert not [v for v in _violations(_stage()) if v.startswith("spec.checkpoint")]


def test_a_hugging_face_snapshot_location_is_confined_like_any_other_but_a_repo_id_is_not_a_location():
    for value, refused in (("s3://other-bucket/snapshots/llava-ov-1.5-8b", True), ("/var/run/secrets/x", True),
                           ("s3://platform-bucket/vlmops/team-a/snapshots/ov-8b", False),
                           ("lmms-lab/LLaVA-OneVision-1.5-8B-Instruct", False)):
        doc = _stage()
        doc["spec"]["initFrom"] = {"huggingFace": value}
        found = [v for v in _violations(doc) if v.startswith("spec.initFrom.huggingFace")]
        assert bool(found) is refused, (value, found)


def test_images_pod_overrides_and_sizes_beyond_the_policy_are_refused_with_their_field():
    doc = _stage()
    doc["spec"].update(image="docker.io/evil/miner:latest", nodes=32, gpusPerNode=8,
                       pod={"serviceAccountName": "admin", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {
                           "name": "team-b-creds", "key": "k"}}}], "tolerations": [{"operator": "Exists"}],
                            "nodeSelector": {"pool": "reserved"}},
                       storage={"endpointURL": "http://10.0.0.1:9000"})
    found = {v.split(":")[0] for v in _violations(doc)}
    assert {"spec.image", "spec.pod.serviceAccountName", "spec.pod.env", "spec.pod.tolerations",
            "spec.pod.nodeSelector", "spec.storage", "spec.nodes", "spec.nodes x spec.gpusPerNode"} <= found
    pds = copy.deepcopy(next(d for d in example_docs("ns") if d["kind"] == "PackedDataset"))
    pds["spec"]["shards"] = 10000
    assert any(v.startswith("spec.shards: 10000 shards exceed") for v in _violations(pds))


def test_without_a_policy_nothing_is_restricted():
    doc = _stage()
    doc["spec"]["image"] = "docker.io/anything:1"
    assert _violations(doc, Policy()) == []


def test_the_operator_reads_progress_only_from_allowed_object_storage():
    assert STRICT.may_read("s3://platform-bucket/vlmops/team-a/run/output")
    assert not STRICT.may_read("s3://platform-bucket/vlmops/team-b/run/output")
    assert not Policy().may_read("http://127.0.0.1:8080/progress")  # SSRF: never, policy or not
    assert not Policy().may_read("file:///etc/passwd")
    assert Policy().may_read("s3://any-bucket/x")


def test_a_cr_breaking_the_policy_stalls_before_any_child_is_created():
    doc = _stage()
    doc["spec"]["image"] = "docker.io/evil/miner:latest"
    kube = FakeKube([doc] + [d for d in example_docs("ns") if d["kind"] == "PackedDataset"])
    out = reconciler.reconcile(kube, "VLMTrainingStage", "ns", "stage-1-alignment", BuildContext(policy=STRICT))
    st = kube.crs[("VLMTrainingStage", "stage-1-alignment")]["status"]
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert out.created == [] and not kube.children
    assert stalled["status"] == "True" and stalled["reason"] == "PolicyViolation" and "spec.image" in stalled["message"]


def test_a_stored_cr_whose_name_the_crd_now_rejects_is_stalled_not_built():
    """A CR stored before the CRD had its name rule ("a.b" would own the same Jobs as "a-b")."""
    doc = next(d for d in example_docs("ns") if d["kind"] == "PackedDataset")
    doc["metadata"]["name"] = "pack.v2"
    kube = FakeKube([doc] + [d for d in example_docs("ns") if d["kind"] == "BalancedCorpus"])
    out = reconciler.reconcile(kube, "PackedDataset", "ns", "pack.v2", BuildContext())
    stalled = next(c for c in kube.crs[("PackedDataset", "pack.v2")]["status"]["conditions"] if c["type"] == "Stalled")
    assert out.created == [] and not kube.children
    assert stalled["status"] == "True" and stalled["message"].startswith("metadata.name: 'pack.v2'")
