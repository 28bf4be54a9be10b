"""The EvalSuite job for real: lmms-eval (pinned) on CPU with a tiny random HF LLaVA built offline,
custom tasks through --include-path (local JSONL + generated images), model and output on a real
S3 protocol server (moto). The main run is `python -m vlmops_jobs.evaluate run` in a subprocess, as in
the pod; the other cases call the same CLI entry (`JOB.run`) in-process (lmms-eval takes ~30 s to import)."""
from __future__ import annotations

import importlib.util
import json
import re
import os
import subprocess
import sys
import time

import pytest

# No hub here: every Hugging Face library stays offline (set before lmms-eval imports them).
for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")

from vlmops_contract import thresholds
from vlmops_contract.result import parse_result
from vlmops_jobs.common import storage
from vlmops_jobs.evaluate import JOB, compare, model

pytest.importorskip("lmms_eval")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
LMMS_MODEL = "llava_hf"  # the tiny checkpoint is a plain HF LLaVA; llava_onevision1_5 needs the OV-1.5 code


def _load_fixtures():
    spec = importlib.util.spec_from_file_location("eval_tiny_llava", os.path.join(FIXTURES, "tiny_llava.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def assets(tmp_path_factory, s3_server):
    """Tiny LLaVA + tasks, uploaded to a bucket; returns URIs and the local copies."""
    import boto3
    import s3fs

    fx = _load_fixtures()
    root = tmp_path_factory.mktemp("eval")
    ckpt = fx.build_tiny_llava(str(root / "tiny-llava"))
    tasks = fx.make_tasks(str(root / "tasks"))
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server, "region_name": "us-east-1"})
    bucket = "evalsuite-test"
    if not fs.exists(bucket):  # boto3: s3fs.mkdir sends LocationConstraint=us-east-1, which S3 rejects
        boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    for local, prefix in ((ckpt, "models/tiny-llava"), (tasks, "tasks/tiny")):
        for rel in model.file_digests(local):
            fs.put_file(os.path.join(local, rel), f"{bucket}/{prefix}/{rel}")
    return {"ckpt": ckpt, "tasks": tasks, "model_uri": f"s3://{bucket}/models/tiny-llava",
            "tasks_uri": f"s3://{bucket}/tasks/tiny", "bucket": f"s3://{bucket}", "root": root,
            "digest": model.tree_digest(model.file_digests(ckpt))}


def _argv(assets, *extra: str, output: str, tasks: str, model_uri=None) -> list[str]:
    return ["run", "--model-uri", model_uri or assets["model_uri"], "--lmms-eval-model", LMMS_MODEL,
            "--model-args", "dtype=float32", "--tasks", tasks, "--batch-size", "1", "--limit", "3",
            "--include-path", assets["tasks_uri"], "--output", output, "--expected-version", "0.7.3",
            "--work-dir", str(assets["root"] / f"work-{time.monotonic_ns()}"), *extra]


class Done:
    def __init__(self, returncode, stdout, stderr, seconds):
        self.returncode, self.stdout, self.stderr, self.seconds = returncode, stdout, stderr, seconds


def _run_inproc(assets, capsys, monkeypatch, *extra: str, output: str, tasks: str = "vlmops_tiny_count", model_uri=None):
    """The same CLI entry in this process (lmms-eval is imported once per test session)."""
    monkeypatch.setenv("VLMOPS_TERMINATION_LOG", str(assets["root"] / "termination-log-inproc"))
    capsys.readouterr()
    t0 = time.monotonic()
    rc = JOB.run(_argv(assets, *extra, output=output, tasks=tasks, model_uri=model_uri))
    cap = capsys.readouterr()
    return Done(rc, cap.out, cap.err, time.monotonic() - t0)


def _run(assets, *extra: str, output: str, tasks: str = "vlmops_tiny_vqa,vlmops_tiny_count", model_uri=None,
         env_extra: dict[str, str] | None = None):
    """`python -m vlmops_jobs.evaluate run ...` in a subprocess, as in the pod."""
    env = dict(os.environ, **(env_extra or {}))
    env.update(
        PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "jobs"), env.get("PYTHONPATH", "")]),
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(assets["root"] / "hf"), VLMOPS_TERMINATION_LOG=str(assets["root"] / "termination-log"),
        OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
    )
    cmd = [sys.executable, "-m", "vlmops_jobs.evaluate", *_argv(assets, *extra, output=output, tasks=tasks, model_uri=model_uri)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    return Done(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def _explain(p) -> str:
    return f"rc={p.returncode}\n--- stdout (tail)\n{p.stdout[-3000:]}\n--- stderr (tail)\n{p.stderr[-6000:]}"


def test_a_real_run_writes_the_layout_and_result_line_and_a_retry_reuses_it(assets, capsys, monkeypatch):
    out = f"{assets['bucket']}/evals/ok"
    p = _run(assets, "--model-digest", assets["digest"], output=out)
    assert p.returncode == 0, _explain(p)
    print(f"real lmms-eval run: {p.seconds:.1f}s")
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith('{"vlmopsResult"') and len(last.encode()) <= 4096
    res = parse_result(p.stdout)
    assert res["lmmsEvalVersion"] == "0.7.3" and res["partial"] is False
    assert res["model"] == {"uri": assets["model_uri"], "digest": assets["digest"]}
    keys = {(r["task"], r["metric"]) for r in res["results"]}
    assert keys == {(t, m) for t in ("vlmops_tiny_vqa", "vlmops_tiny_count") for m in ("exact_match", "relaxed_accuracy")} \
        | {("vlmops_tiny_vqa", "answer_chars")}
    for r in res["results"]:
        assert set(r) == {"task", "metric", "value"}
        if r["metric"] != "answer_chars":
            assert 0.0 <= r["value"] <= 1.0 and r["value"] * 3 == pytest.approx(round(r["value"] * 3))  # 3 samples
    assert res["throughput"]["samplesPerSecond"] > 0 and res["throughput"]["modelCopyBytesPerSecond"] > 0
    with open(assets["root"] / "termination-log") as f:
        assert json.loads(f.read())["vlmopsResult"] == res

    # output layout: normalised results.json, raw lmms-eval files, manifest last with every digest
    doc = storage.read_json(f"{out}/results.json")
    assert doc["results"] == res["results"] and doc["partial"] is False and doc["lmmsEvalVersion"] == "0.7.3"
    assert doc["model"]["digest"] == assets["digest"] and doc["tasks"]["vlmops_tiny_vqa"]["samples"] == 3
    raw = storage.read_json(f"{out}/lmms-eval/vlmops_tiny_vqa/results.json")
    assert "exact_match,none" in raw["results"]["vlmops_tiny_vqa"] and raw["lmms_eval_version"]
    samples = storage.read_bytes(f"{out}/lmms-eval/vlmops_tiny_count/samples.jsonl").decode().splitlines()
    assert len(samples) == 3 and "resps" in json.loads(samples[0])
    manifest = storage.read_json(f"{out}/manifest.json")
    assert manifest["kind"] == "EvalSuiteManifest" and manifest["stats"]["partial"] is False
    assert manifest["inputs"]["model"]["digest"] == assets["digest"] and manifest["locations"]["includePath"] == assets["tasks_uri"]
    assert manifest["parameters"]["tasks"] == ["vlmops_tiny_vqa", "vlmops_tiny_count"]
    # identity covers the normalised results; lmms-eval's own files (dates, timings) are digested beside it
    assert set(manifest["files"]) == {"results.json"} and "lmms-eval/vlmops_tiny_vqa/results.json" in manifest["rawFiles"]
    for rel, digest in {**manifest["files"], **manifest["rawFiles"]}.items():
        assert storage.sha256_uri(f"{out}/{rel}") == digest
    assert res["output"]["manifest"] == f"{out}/manifest.json" and res["output"]["identity"] == manifest["identity"]
    assert res["output"]["digest"] == storage.sha256_uri(f"{out}/manifest.json")

    # thresholds on the real results (what the operator does with status.results)
    em = next(r["value"] for r in res["results"] if r["task"] == "vlmops_tiny_vqa" and r["metric"] == "exact_match")
    assert thresholds.evaluate_thresholds(res["results"], {"vlmops_tiny_vqa/exact_match": em}) == (1, 1, [])
    passed, total, failing = thresholds.evaluate_thresholds(
        res["results"], {"vlmops_tiny_vqa/exact_match": em + 0.5, "vlmops_tiny_count/relaxed_accuracy": 0.0})
    assert (passed, total) == (1, 2) and failing[0].startswith("vlmops_tiny_vqa/exact_match: ")

    # compare two outputs (the same run twice: zero deltas)
    table_rows = compare.compare_rows(compare.load_results(out), compare.load_results(f"{out}/results.json"))
    assert all(r["delta"] == 0 for r in table_rows) and len(table_rows) == 5

    # a retried pod: same inputs, complete output -> reported again without re-evaluating
    p2 = _run_inproc(assets, capsys, monkeypatch, output=out, tasks="vlmops_tiny_vqa,vlmops_tiny_count")
    assert p2.returncode == 0, _explain(p2)
    res2 = parse_result(p2.stdout)
    assert res2["results"] == res["results"] and res2["throughput"].get("reused") is True
    assert res2["output"] == res["output"]


def test_a_task_crash_keeps_the_other_tasks_results_and_exits_1(assets, tmp_path, capsys, monkeypatch):
    out = f"file://{tmp_path}/partial"
    p = _run_inproc(assets, capsys, monkeypatch, output=out, tasks="vlmops_tiny_count,vlmops_tiny_crash",
                    model_uri=f"file://{assets['ckpt']}")
    assert p.returncode == 1, _explain(p)
    assert "error: lmmsEval tasks: vlmops_tiny_crash failed" in p.stderr
    res = parse_result(p.stdout)
    assert res["partial"] is True
    assert {r["task"] for r in res["results"]} == {"vlmops_tiny_count"}
    assert res["errors"][0]["task"] == "vlmops_tiny_crash" and "image decoding failed on purpose" in res["errors"][0]["error"]
    doc = storage.read_json(f"{out}/results.json")
    assert doc["partial"] is True and doc["errors"] == res["errors"]
    assert storage.read_json(f"{out}/manifest.json")["stats"]["tasksFailed"] == 1


def test_a_killed_eval_reruns_only_its_unfinished_tasks_and_ends_as_an_uninterrupted_one(
        assets, tmp_path, capsys, monkeypatch):
    tasks, local = "vlmops_tiny_vqa,vlmops_tiny_count", f"file://{assets['ckpt']}"
    whole, resumed = f"file://{tmp_path}/whole", f"file://{tmp_path}/resumed"
    assert _run_inproc(assets, capsys, monkeypatch, output=whole, tasks=tasks, model_uri=local).returncode == 0
    monkeypatch.setenv("VLMOPS_EVAL_CRASH_AFTER_TASKS", "1")  # the pod dies after its first task
    with pytest.raises(SystemExit):
        _run_inproc(assets, capsys, monkeypatch, output=resumed, tasks=tasks, model_uri=local)
    capsys.readouterr()
    assert storage.exists(f"{resumed}/lmms-eval/vlmops_tiny_vqa/done.json")
    assert not storage.exists(f"{resumed}/lmms-eval/vlmops_tiny_count/done.json")
    assert not storage.exists(f"{resumed}/manifest.json")
    monkeypatch.delenv("VLMOPS_EVAL_CRASH_AFTER_TASKS")
    p = _run_inproc(assets, capsys, monkeypatch, output=resumed, tasks=tasks, model_uri=local)
    assert p.returncode == 0, _explain(p)
    assert "task vlmops_tiny_vqa: 3 metrics, reused from an earlier run" in p.stderr
    assert re.search(r"task vlmops_tiny_count: \d+ metrics in [\d.]+s", p.stderr)  # evaluated now
    assert storage.read_bytes(f"{resumed}/results.json") == storage.read_bytes(f"{whole}/results.json")
    a, b = storage.read_json(f"{whole}/manifest.json"), storage.read_json(f"{resumed}/manifest.json")
    assert a["files"]["results.json"] == b["files"]["results.json"] and set(a["files"]) == set(b["files"])
    # a task committed with other parameters is evaluated again, not reused
    p = _run_inproc(assets, capsys, monkeypatch, "--limit", "2", output=resumed, tasks=tasks, model_uri=local)
    assert p.returncode == 0 and "reused" not in p.stderr


def test_two_data_parallel_workers_score_like_one_and_resume_per_task(assets, tmp_path, capsys, monkeypatch):
    """`--workers 2`: torchrun ranks split each task's documents (3 per task: 2 + 1) and rank 0 writes;
    killed after the first task, the rerun evaluates only the second; everything equals one process's run."""
    tasks, local = "vlmops_tiny_vqa,vlmops_tiny_count", f"file://{assets['ckpt']}"
    one, two = f"file://{tmp_path}/one", f"file://{tmp_path}/two"
    assert _run_inproc(assets, capsys, monkeypatch, output=one, tasks=tasks, model_uri=local).returncode == 0
    p = _run(assets, "--workers", "2", output=two, tasks=tasks, model_uri=local,
             env_extra={"VLMOPS_EVAL_CRASH_AFTER_TASKS": "1"})  # the pod dies after its first task
    assert p.returncode == 1, _explain(p)
    assert "rank 1/2: evaluating vlmops_tiny_vqa, vlmops_tiny_count" in p.stderr
    assert storage.exists(f"{two}/lmms-eval/vlmops_tiny_vqa/done.json")
    assert not storage.exists(f"{two}/lmms-eval/vlmops_tiny_count/done.json") and not storage.exists(f"{two}/manifest.json")
    p = _run(assets, "--workers", "2", output=two, tasks=tasks, model_uri=local)
    assert p.returncode == 0, _explain(p)
    assert "rank 1/2: evaluating vlmops_tiny_count" in p.stderr
    assert "task vlmops_tiny_vqa: 3 metrics, reused from an earlier run" in p.stderr
    res = parse_result(p.stdout)
    assert p.stdout.strip().splitlines()[-1].startswith('{"vlmopsResult"') and res["throughput"]["workers"] == 2
    values = {(r["task"], r["metric"]): r["value"] for r in res["results"]}
    assert values[("vlmops_tiny_vqa", "answer_chars")] > 0  # a score that depends on every document
    for rel in ("results.json", "lmms-eval/vlmops_tiny_vqa/samples.jsonl", "lmms-eval/vlmops_tiny_count/samples.jsonl"):
        assert storage.read_bytes(f"{two}/{rel}") == storage.read_bytes(f"{one}/{rel}"), rel
    assert len(storage.read_bytes(f"{two}/lmms-eval/vlmops_tiny_count/samples.jsonl").splitlines()) == 3
    assert storage.read_json(f"{two}/manifest.json")["stats"]["workers"] == 2


@pytest.mark.parametrize(
    "case,args,message",
    [
        ("unknown-task", {"tasks": "vlmops_tiny_vqa,no_such_task"}, "error: lmmsEval tasks: unknown task no_such_task"),
        ("missing-model", {"model_uri": "file:///nonexistent/ckpt"}, "error: model uri: file:///nonexistent/ckpt does not exist"),
        ("digest-mismatch", {"extra": ("--model-digest", "sha256:" + "1" * 64)}, "error: model digest: expected sha256:111"),
        ("version-pin", {"extra": ("--expected-version", "0.6.0")}, "error: lmmsEval version: pinned 0.6.0, this image has lmms-eval 0.7.3"),
        ("workers", {"extra": ("--workers", "0")}, "error: parallelism workers: 0 must be >= 1"),
        ("vllm-missing", {"extra": ("--backend", "vllm", "--gpus", "1", "--lmms-eval-model", "vllm")}, "error: backend vllm: vllm is not installed"),
        ("vllm-reserved", {"extra": ("--backend", "vllm", "--gpus", "1", "--lmms-eval-model", "vllm",
                                          "--model-args", "tensor_parallel_size=2")},
         "error: lmmsEval modelArgs: tensor_parallel_size are set from spec.model"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(assets, tmp_path, capsys, monkeypatch, case, args, message):
    out = tmp_path / "out"
    p = _run_inproc(assets, capsys, monkeypatch, *args.get("extra", ()), output=f"file://{out}",
                    tasks=args.get("tasks", "vlmops_tiny_vqa"), model_uri=args.get("model_uri", f"file://{assets['ckpt']}"))
    assert p.returncode == 2, _explain(p)
    assert p.stderr.strip().splitlines()[-1].startswith(message), _explain(p)
    assert not out.exists()
