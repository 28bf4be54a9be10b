"""The checkpoint an EvalSuite evaluates: local or copied from S3, its digest, its manifest checks."""
from __future__ import annotations

import os

import pytest

from vlmops_contract.layouts import MANIFEST
from vlmops_contract.layouts.train import HF_EXPORT
from vlmops_jobs.common import lineage, storage
from vlmops_jobs.common.result import JobError
from vlmops_jobs.evaluate import model


def _fake_checkpoint(root) -> str:
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    with open(os.path.join(root, "config.json"), "w") as f:
        f.write('{"model_type": "llava"}')
    with open(os.path.join(root, "model.safetensors"), "wb") as f:
        f.write(os.urandom(3 << 20))
    with open(os.path.join(root, "sub", "tokenizer.json"), "w") as f:
        f.write("{}")
    return str(root)


def test_a_local_checkpoint_is_used_in_place_and_a_wrong_digest_or_path_is_bad_input(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "ckpt")
    m = model.resolve_model(f"file://{ckpt}", str(tmp_path / "work"))
    assert m.local_dir == ckpt and not m.copied and m.files == 3 and m.digest.startswith("sha256:")
    assert model.resolve_model(ckpt, str(tmp_path / "work"), expected_digest=m.digest).digest == m.digest
    with pytest.raises(JobError, match="model digest: expected sha256:00"):
        model.resolve_model(ckpt, str(tmp_path / "work"), expected_digest="sha256:" + "0" * 64)
    with pytest.raises(JobError, match="does not exist"):
        model.resolve_model(str(tmp_path / "missing"), str(tmp_path / "work"))
    with pytest.raises(JobError, match="local cache"):
        model.resolve_model("nobody/not-a-cached-model", str(tmp_path / "work"))
    os.remove(os.path.join(ckpt, "config.json"))
    with pytest.raises(JobError, match="no config.json"):
        model.resolve_model(ckpt, str(tmp_path / "work"))


def test_a_checkpoint_is_verified_against_its_own_manifest(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "ckpt")
    files = model.file_digests(ckpt)
    manifest = {"kind": "VLMTrainingStageManifest", "files": files, "identity": "sha256:" + "1" * 64}
    digest = storage.write_json_atomic(os.path.join(ckpt, MANIFEST), manifest)
    m = model.resolve_model(ckpt, str(tmp_path / "w"), expected_digest=digest)  # the stage's output digest
    assert m.manifest_digest == digest and m.lineage()["identity"] == manifest["identity"]
    assert model.resolve_model(ckpt, str(tmp_path / "w"), expected_digest=manifest["identity"]).digest == m.digest
    with open(os.path.join(ckpt, "sub", "tokenizer.json"), "w") as f:
        f.write('{"tampered": true}')
    with pytest.raises(JobError, match="model digest: sub/tokenizer.json is sha256:"):
        model.resolve_model(ckpt, str(tmp_path / "w"))


def test_a_training_stage_export_is_verified_against_the_stage_manifest(tmp_path):
    """A training stage writes <output>/hf/... and <output>/manifest.json listing hf/<file>: the
    operator passes the stage's status.output.digest (the manifest's digest) as --model-digest."""
    out = tmp_path / "stage"
    ckpt = _fake_checkpoint(out / HF_EXPORT)
    files = {f"{HF_EXPORT}/{k}": v for k, v in model.file_digests(ckpt).items()}
    files["progress.json"] = storage.write_json_atomic(str(out / "progress.json"), {"step": 3})
    block = lineage.commit_manifest(f"file://{out}", lineage.build_manifest(
        kind="VLMTrainingStage", step="train", inputs={}, parameters={}, files=files))
    m = model.resolve_model(f"file://{out}/{HF_EXPORT}", str(tmp_path / "w"), expected_digest=block["digest"])
    assert m.manifest_digest == block["digest"]
    with open(os.path.join(ckpt, "model.safetensors"), "ab") as f:
        f.write(b"x")
    with pytest.raises(JobError, match="model digest: model.safetensors is sha256:"):
        model.resolve_model(f"file://{out}/{HF_EXPORT}", str(tmp_path / "w"), expected_digest=block["digest"])


def test_a_checkpoint_on_s3_is_copied_with_the_same_digest_as_the_original(s3_bucket, tmp_path):
    """A real S3 protocol server (moto) through s3fs: copy, digest equal to the local original."""
    ckpt = _fake_checkpoint(tmp_path / "ckpt")
    local = model.resolve_model(ckpt, str(tmp_path / "w0"))
    fs, _ = storage.get_fs(s3_bucket)
    for rel in model.file_digests(ckpt):
        fs.put_file(os.path.join(ckpt, rel), f"{s3_bucket[5:]}/models/tiny/{rel}")
    logs = []
    m = model.resolve_model(f"{s3_bucket}/models/tiny", str(tmp_path / "w1"), expected_digest=local.digest,
                            log=logs.append)
    assert m.copied and m.local_dir == str(tmp_path / "w1" / "model") and m.digest == local.digest
    assert m.files == 3 and m.bytes == (3 << 20) + len('{"model_type": "llava"}') + 2
    assert "bytes/s" in logs[0] and "files/s" in logs[0]
    with pytest.raises(JobError, match="does not exist or is empty"):
        model.resolve_model(f"{s3_bucket}/models/none", str(tmp_path / "w2"))
