"""EvalSuite job pieces that need no lmms-eval run: normalising, thresholds, compare, model copy."""
from __future__ import annotations

import json
import math
import os

import pytest

from vlmops_jobs.common import storage
from vlmops_jobs.common.result import JobError
from vlmops_contract import thresholds
from vlmops_jobs.evaluate import compare, model, normalize, run

RAW = {
    "results": {
        "mmbench_en": {"alias": "mmbench_en", " ": " "},
        "mmmu_val": {"alias": "mmmu_val", "mmmu_acc,none": 0.4123, "mmmu_acc_stderr,none": "N/A"},
        "gsm8k": {
            "alias": "gsm8k",
            "exact_match,strict-match": 0.5,
            "exact_match_stderr,strict-match": 0.1,
            "exact_match,flexible-extract": 0.6,
            "exact_match_stderr_clt,flexible-extract": 0.2,
            "submission,none": None,
            "bad,none": float("nan"),
        },
    },
    "n-samples": {"mmmu_val": {"original": 900, "effective": 10}, "gsm8k": {"original": 5, "effective": 5}},
    "versions": {"mmmu_val": 0.0, "gsm8k": "Yaml"},
}


def test_normalize_shapes_results_for_status():
    n = normalize.normalize(RAW)
    assert n["results"] == [
        {"task": "gsm8k", "metric": "exact_match,flexible-extract", "value": 0.6},
        {"task": "gsm8k", "metric": "exact_match,strict-match", "value": 0.5},
        {"task": "mmmu_val", "metric": "mmmu_acc", "value": 0.4123},
    ]
    assert all(set(r) == {"task", "metric", "value"} for r in n["results"])
    assert n["tasks"]["gsm8k"]["stderr"] == {"exact_match,strict-match": 0.1}
    assert n["tasks"]["mmmu_val"] == {"samples": 10, "originalSamples": 900, "version": 0.0}
    assert n["skipped"] == ["gsm8k/bad: non-finite value", "gsm8k/submission: NoneType value"]
    json.dumps(n, allow_nan=False)  # status-safe


def test_thresholds_pass_fail_missing():
    results = [
        {"task": "t", "metric": "exact_match", "value": 0.75},
        {"task": "t", "metric": "relaxed_accuracy", "value": 0.25},
        {"task": "u", "metric": "m", "value": float("nan")},
    ]
    passed, total, failing = thresholds.evaluate_thresholds(
        results, {"t/exact_match": 0.75, "t/relaxed_accuracy": 0.5, "t/missing": 0.1, "u/m": 0.0}
    )
    assert (passed, total) == (1, 4)
    assert failing == ["t/missing: missing from results", "t/relaxed_accuracy: 0.25 < 0.5", "u/m: not a finite number (nan)"]
    assert thresholds.evaluate_thresholds(results, {}) == (0, 0, [])
    assert thresholds.evaluate_thresholds(results, {"t/exact_match": 0.5}) == (1, 1, [])
    with pytest.raises(ValueError):
        thresholds.evaluate_thresholds(results, {"no-slash": 1.0})


def test_references_shipped_as_package_data():
    refs = compare.references()["llava-ov-1.5-8b"]["results"]
    by_task = {r["task"]: r for r in refs}
    assert {k: by_task[k]["reported"] for k in by_task} == {
        "mmmu_val": 55.4, "mmbench_en_dev": 84.1, "docvqa_val": 95.0, "chartqa": 86.5}
    for r in refs:  # value is in lmms-eval units
        assert math.isclose(r["value"] * r["scale"], r["reported"])
    assert by_task["chartqa"]["metric"] == "relaxed_overall"


def test_compare_table_and_reference(tmp_path, capsys):
    a = {"lmmsEvalVersion": "0.7.3", "partial": False,
         "results": [{"task": "mmmu_val", "metric": "mmmu_acc", "value": 0.5},
                     {"task": "chartqa", "metric": "relaxed_overall", "value": 0.8}]}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(a))
    raw_b = {"results": {"mmmu_val": {"alias": "mmmu_val", "mmmu_acc,none": 0.52}}}
    (tmp_path / "b.json").write_text(json.dumps(raw_b))

    rows = compare.compare_rows(compare.load_results(str(tmp_path / "a")), compare.load_results(str(tmp_path / "b.json")),
                                compare.reference_results("llava-ov-1.5-8b"))
    mmmu = next(r for r in rows if r["task"] == "mmmu_val")
    assert math.isclose(mmmu["delta"], 0.02) and math.isclose(mmmu["aVsRef"], 0.5 - 0.554)
    chart = next(r for r in rows if r["task"] == "chartqa")
    assert chart["b"] is None and chart["delta"] is None and math.isclose(chart["aVsRef"], 0.8 - 0.865)
    assert {r["task"] for r in rows} == {"mmmu_val", "chartqa", "mmbench_en_dev", "docvqa_val"}

    assert compare.compare_main([f"file://{tmp_path}/a", str(tmp_path / "b.json"), "--reference", "llava-ov-1.5-8b"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["task", "metric", "a", "b.json", "b.json-a", "llava-ov-1.5-8b", "a-llava-ov-1.5-8b",
                              "b.json-llava-ov-1.5-8b"]
    line = next(l for l in out if l.startswith("mmmu_val"))
    assert line.split() == ["mmmu_val", "mmmu_acc", "0.5000", "0.5200", "+0.0200", "0.5540", "-0.0540", "-0.0340"]
    assert next(l for l in out if l.startswith("docvqa_val")).split()[2:5] == ["-", "-", "-"]

    # one side only, against the reference; an EvalSuite object as YAML; JSON rows
    evs = tmp_path / "evs.yaml"
    evs.write_text("apiVersion: vlmops.dev/v1alpha1\nkind: EvalSuite\nstatus:\n  results:\n"
                   "  - {task: docvqa_val, metric: anls, value: 0.9}\n")
    assert compare.compare_main([str(evs), "--reference", "ref:llava-ov-1.5-8b", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    doc = next(r for r in rows if r["task"] == "docvqa_val")
    assert doc["a"] == 0.9 and math.isclose(doc["aVsRef"], -0.05) and "b" not in doc


def test_compare_bad_input(tmp_path):
    with pytest.raises(JobError, match="not found"):
        compare.compare_main([str(tmp_path / "nope.json"), "--reference", "llava-ov-1.5-8b"])
    with pytest.raises(JobError, match="unknown"):
        compare.compare_main(["ref:llava-ov-1.5-400b", "ref:llava-ov-1.5-8b"])
    with pytest.raises(JobError, match="two evaluations"):
        compare.compare_main(["ref:llava-ov-1.5-8b"])


def test_result_line_fits_termination_message():
    many = [{"task": f"task_{i:03d}", "metric": "exact_match,flexible-extract", "value": i / 7} for i in range(200)]
    result = {"results": many, "lmmsEvalVersion": "0.7.3", "partial": True,
              "errors": [{"task": "x", "error": "E" * 300}] * 3,
              "output": {"uri": "s3://b/o", "manifest": "s3://b/o/manifest.json", "digest": "sha256:" + "0" * 64}}
    fitted = run.fit_result(result)
    line = json.dumps({"vlmopsResult": fitted}, sort_keys=True, separators=(",", ":"))
    assert len(line.encode()) <= 4096
    assert fitted["resultsTruncated"]["total"] == 200 and fitted["resultsTruncated"]["shown"] == len(fitted["results"]) > 10
    assert fitted["results"] == many[: len(fitted["results"])]
    small = {"results": many[:3], "partial": False}
    assert run.fit_result(small) is small


def test_arg_parsing_errors():
    assert run.parse_model_args("max_pixels=1605632, attn_implementation=sdpa") == {
        "max_pixels": "1605632", "attn_implementation": "sdpa"}
    with pytest.raises(JobError, match="pretrained"):
        run.parse_model_args("pretrained=/x")
    with pytest.raises(JobError, match="key=value"):
        run.parse_model_args("max_pixels")
    assert run.parse_tasks("a, b,a,,c") == ["a", "b", "c"]
    with pytest.raises(JobError):
        run.parse_tasks(" , ")
    assert run.parse_limit("5") == 5 and run.parse_limit("0.5") == 0.5 and run.parse_limit(None) is None
    with pytest.raises(JobError):
        run.parse_limit("-1")


def _fake_checkpoint(root) -> str:
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    with open(os.path.join(root, "config.json"), "w") as f:
        f.write('{"model_type": "llava"}')
    with open(os.path.join(root, "model.safetensors"), "wb") as f:
        f.write(os.urandom(3 << 20))
    with open(os.path.join(root, "sub", "tokenizer.json"), "w") as f:
        f.write("{}")
    return str(root)


def test_resolve_local_model_digest_and_errors(tmp_path):
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


def test_resolve_model_verifies_its_manifest(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "ckpt")
    files = model.file_digests(ckpt)
    manifest = {"kind": "VLMTrainingStageManifest", "files": files}
    digest = storage.write_json_atomic(os.path.join(ckpt, "manifest.json"), manifest)
    m = model.resolve_model(ckpt, str(tmp_path / "w"), expected_digest=digest)  # the stage's output digest
    assert m.manifest_digest == digest and m.lineage()["manifestDigest"] == digest
    with open(os.path.join(ckpt, "sub", "tokenizer.json"), "w") as f:
        f.write('{"tampered": true}')
    with pytest.raises(JobError, match="model digest: sub/tokenizer.json is sha256:"):
        model.resolve_model(ckpt, str(tmp_path / "w"))


@pytest.fixture
def eval_bucket(s3_server):
    """A fresh bucket on the moto server. (conftest's `s3_bucket` passes LocationConstraint=us-east-1,
    which S3 and moto reject, so the bucket is made with boto3 here.)"""
    import uuid

    import boto3

    name = f"evt-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}"


def test_resolve_training_stage_export(tmp_path):
    """A training stage writes <output>/hf/... and <output>/manifest.json listing hf/<file>: the
    operator passes the stage's status.output.digest (the manifest's digest) as --model-digest."""
    from vlmops_jobs.common import lineage

    out = tmp_path / "stage"
    ckpt = _fake_checkpoint(out / "hf")
    files = {f"hf/{k}": v for k, v in model.file_digests(ckpt).items()}
    files["progress.json"] = storage.write_json_atomic(str(out / "progress.json"), {"step": 3})
    block = lineage.commit_manifest(f"file://{out}", lineage.build_manifest(
        kind="VLMTrainingStage", step="train", inputs={}, parameters={}, files=files))
    m = model.resolve_model(f"file://{out}/hf", str(tmp_path / "w"), expected_digest=block["digest"])
    assert m.manifest_digest == block["digest"]
    with open(os.path.join(ckpt, "model.safetensors"), "ab") as f:
        f.write(b"x")
    with pytest.raises(JobError, match="model digest: model.safetensors is sha256:"):
        model.resolve_model(f"file://{out}/hf", str(tmp_path / "w"), expected_digest=block["digest"])


def test_model_copied_from_s3(eval_bucket, tmp_path):
    s3_bucket = eval_bucket
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
