"""VLMTrainingStage job on CPU: torchrun x2 with gloo, tiny preset, packed shards (moto S3 + file)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from vlmops_jobs.common import storage  # noqa: E402
from vlmops_contract.result import parse_result  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/jobs: `train.fixtures`
from train.fixtures.packed import make_packed_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def _env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "operator"), str(REPO / "jobs"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["VLMOPS_TERMINATION_LOG"] = os.devnull
    env.pop("VLMOPS_TRAIN_CRASH_AFTER_STEP", None)
    env.update(extra or {})
    return env


_PORT = [29611]


def _launch(cmd, extra_env=None, timeout=240) -> subprocess.CompletedProcess:
    """torchrun in its own process group: on a timeout the launcher and every rank go down together."""
    proc = subprocess.Popen(cmd, env=_env(extra_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def torchrun(args, nproc=2, extra_env=None, check=True, timeout=240):
    _PORT[0] += 1
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port",
           str(_PORT[0]), "-m", "vlmops_jobs.train", "--metrics-port", "0", *args]
    p = _launch(cmd, extra_env, timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"torchrun failed rc={p.returncode}\nSTDOUT:\n{p.stdout[-4000:]}\nSTDERR:\n{p.stderr[-6000:]}")
    return p


def losses(stdout: str) -> dict[int, float]:
    out = {}
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and '"loss"' in line and '"step"' in line and "vlmopsResult" not in line:
            d = json.loads(line)
            out[d["step"]] = d["loss"]
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return make_packed_dataset(f"file://{root}/packed", str(root / "tok"), n_samples=10, capacity=200)


COMMON = ["--preset", "tiny", "--global-batch", "2", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup-fraction", "0.1",
          "--seed", "7", "--clip-grad", "1.0"]


@pytest.fixture(scope="module")
def stage_a(dataset, tmp_path_factory):
    """DP=2, all modules trainable, 8 steps, checkpoints every 4 (keep 1)."""
    root = tmp_path_factory.mktemp("a")
    ck, out = f"file://{root}/ckpt", f"file://{root}/out"
    p = torchrun(["--data", dataset["uri"], "--tokenizer", dataset["tokenizer"], *COMMON, "--train-iters", "8",
                  "--checkpoint-uri", ck, "--checkpoint-interval", "4", "--checkpoint-keep", "1", "--output", out])
    return {"ckpt": ck, "out": out, "stdout": p.stdout, "losses": losses(p.stdout), "root": root}


def test_dp2_run_overfits_and_writes_checkpoints_progress_hf_and_manifest(stage_a):
    ls = stage_a["losses"]
    assert sorted(ls) == list(range(1, 9))
    first, last = ls[1], ls[8]
    assert last < ls[4] < first and last < 0.85 * first, ls  # overfitting 5 sequences
    res = parse_result(stage_a["stdout"])
    assert set(res) == {"progress", "checkpoint", "output", "hf"}
    assert res["progress"]["step"] == 8 and res["progress"]["totalSteps"] == 8
    assert res["progress"]["tokensPerSecond"] > 0 and res["progress"]["samplesPerSecond"] > 0
    assert res["checkpoint"]["step"] == 8 and res["checkpoint"]["latest"].endswith("iter_0000008")
    assert len(json.dumps({"vlmopsResult": res})) < 4096
    # layout: latest written last, keep=1 pruned iter_4
    latest = storage.read_json(storage.join(stage_a["ckpt"], "latest"))
    assert latest == {"iteration": "iter_0000008", "step": 8}
    fs, p = storage.get_fs(stage_a["ckpt"])
    assert sorted(x.rsplit("/", 1)[-1] for x in fs.ls(p, detail=False)) == ["iter_0000008", "latest"]
    prog = storage.read_json(storage.join(stage_a["out"], "progress.json"))
    assert prog["step"] == 8 and prog["checkpoint"]["step"] == 8
    man = storage.read_json(storage.join(stage_a["out"], "manifest.json"))
    assert "hf/config.json" in man["files"] and man["stats"]["steps"] == 8


def test_killed_run_resumes_on_the_same_loss_curve(dataset, stage_a, tmp_path):
    ck, out = f"file://{tmp_path}/ckpt", f"file://{tmp_path}/out"
    args = ["--data", dataset["uri"], "--tokenizer", dataset["tokenizer"], *COMMON, "--train-iters", "8",
            "--checkpoint-uri", ck, "--checkpoint-interval", "4", "--checkpoint-keep", "1", "--output", out,
            "--hf-export", "off"]
    p1 = torchrun(args, extra_env={"VLMOPS_TRAIN_CRASH_AFTER_STEP": "5"}, check=False)
    assert p1.returncode != 0
    l1 = losses(p1.stdout)
    assert max(l1) == 5
    assert storage.read_json(storage.join(ck, "latest"))["step"] == 4
    p2 = torchrun(args)
    l2 = losses(p2.stdout)
    assert sorted(l2) == [5, 6, 7, 8]
    for s in range(1, 6):
        assert l1[s] == stage_a["losses"][s]
    for s in range(5, 9):
        assert l2[s] == stage_a["losses"][s], (s, l2, stage_a["losses"])


def _hf_state(uri):
    from safetensors.torch import load_file

    fs, p = storage.get_fs(uri)
    files = [f for f in fs.ls(p, detail=False) if f.endswith(".safetensors")]
    st = {}
    for f in files:
        local = Path(p) / Path(f).name
        st.update(load_file(str(local)))
    return st


@pytest.fixture(scope="module")
def stage_1(dataset, stage_a, tmp_path_factory):
    """Stage-1 policy (projector only) initialized from stage A, DP=2."""
    root = tmp_path_factory.mktemp("s1")
    ck, out = f"file://{root}/ckpt", f"file://{root}/out"
    torchrun(["--data", dataset["uri"], "--tokenizer", dataset["tokenizer"], *COMMON, "--train-iters", "2",
              "--trainable", "projector", "--init-from", stage_a["ckpt"], "--checkpoint-uri", ck, "--output", out])
    return {"ckpt": ck, "out": out}


def test_stage1_projector_only_leaves_vision_and_llm_bit_identical(stage_a, stage_1):
    a = _hf_state(storage.join(stage_a["out"], "hf"))
    b = _hf_state(storage.join(stage_1["out"], "hf"))
    assert a.keys() == b.keys()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed, "projector should have trained"
    assert all(k.startswith("visual.merger.") for k in changed), sorted(changed)[:5]  # the patch merger


def test_tp2_run_loads_weights_written_with_tp1(dataset, stage_1, tmp_path):
    """Stage-2 with TP=2 from Stage-1's (TP=1) checkpoint; lr=0 so the exported weights must equal."""
    out = f"file://{tmp_path}/out"
    p = torchrun(["--data", dataset["uri"], "--tokenizer", dataset["tokenizer"], "--preset", "tiny",
                  "--global-batch", "2", "--lr", "0", "--train-iters", "1", "--tensor", "2",
                  "--init-from", stage_1["ckpt"], "--output", out])
    assert losses(p.stdout)[1] > 0
    a = _hf_state(storage.join(stage_1["out"], "hf"))
    b = _hf_state(storage.join(out, "hf"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_tp2_stage_starts_from_a_release_format_snapshot(dataset, stage_a, tmp_path):
    """initFrom.huggingFace: stage A's export (the release's format) imported at TP=2 while loading; lr=0,
    so the new export must equal it, and lineage names the snapshot by digest."""
    snapshot = storage.join(stage_a["out"], "hf")
    out = f"file://{tmp_path}/out"
    p = torchrun(["--data", dataset["uri"], "--tokenizer", dataset["tokenizer"], "--preset", "tiny",
                  "--global-batch", "2", "--lr", "0", "--train-iters", "1", "--tensor", "2",
                  "--init-from", f"hf://{snapshot}", "--output", out])
    imported = _events(p.stdout, "imported")
    assert imported and imported[0]["digest"].startswith("sha256:")
    assert _events(p.stdout, "importing")[-1]["tensors"] == _events(p.stdout, "importing")[-1]["of"]
    a, b = _hf_state(snapshot), _hf_state(storage.join(out, "hf"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    man = storage.read_json(storage.join(out, "manifest.json"))
    assert man["inputs"]["initFrom"] == {"uri": f"hf://{snapshot}", "digest": imported[0]["digest"]}


def test_shards_checkpoints_and_outputs_work_on_s3(s3_bucket, tmp_path):
    """Shards read from and checkpoints/outputs written to the moto S3 server through s3fs."""
    d = make_packed_dataset(f"{s3_bucket}/packed", str(tmp_path / "tok"), n_samples=6, capacity=150, seed=3)
    ck, out = f"{s3_bucket}/ckpt", f"{s3_bucket}/out"
    p = torchrun(["--data", d["uri"], "--tokenizer", d["tokenizer"], "--preset", "tiny", "--global-batch", "2",
                  "--train-iters", "2", "--checkpoint-uri", ck, "--checkpoint-interval", "1", "--output", out,
                  "--hf-export", "off"])
    res = parse_result(p.stdout)
    assert res["checkpoint"] == {"latest": f"{ck}/iter_0000002", "step": 2}
    assert storage.read_json(f"{ck}/latest")["iteration"] == "iter_0000002"
    assert storage.exists(f"{ck}/iter_0000002/metadata.json")
    assert storage.exists(f"{out}/manifest.json") and storage.exists(f"{out}/progress.json")


# --------------------------------------------------------------------------- optimizer correctness
def _events(stdout: str, name: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and f'"event": "{name}"' in line:
            out.append(json.loads(line))
    return out


def test_bf16_with_fp32_masters_changes_as_many_weights_as_fp32(dataset):
    """One step at lr 1e-5 from the same init: the bf16 paths (megatron's mixed-precision and
    distributed optimizers, fp32 masters) change the same share of weights as fp32; torch AdamW on
    bf16 params loses most updates."""
    _PORT[0] += 1
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port", str(_PORT[0]),
           str(Path(__file__).parent / "fixtures" / "update_probe.py"), "--data", dataset["uri"],
           "--tokenizer", dataset["tokenizer"], "--lr", "1e-5"]
    p = _launch(cmd)
    assert p.returncode == 0, p.stderr[-4000:]
    r = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])
    assert r["fp32"]["fraction"] > 0.5
    for mode in ("bf16", "bf16_dist"):
        assert r[mode]["dtype"] == "float32"  # the optimizer owns fp32 masters of the bf16 model
        assert abs(r[mode]["fraction"] - r["fp32"]["fraction"]) <= 0.01 * r["fp32"]["fraction"], r
    assert r["bf16_raw"]["fraction"] < 0.5 * r["fp32"]["fraction"], r  # the probe sees lost updates


@pytest.fixture(scope="module")
def tp_runs(dataset, stage_a, tmp_path_factory):
    """From one init (stage A's weights), 6 steps at lr 3e-3 in fp32: TP=1 (1 rank) and TP=2 (2 ranks);
    then TP=2 resumed from the TP=1 run's step-3 checkpoint."""
    root = tmp_path_factory.mktemp("tp")
    base = ["--data", dataset["uri"], "--tokenizer", dataset["tokenizer"], "--preset", "tiny", "--global-batch", "2",
            "--lr", "3e-3", "--schedule", "constant", "--warmup-fraction", "0", "--seed", "11", "--train-iters", "6",
            "--checkpoint-interval", "3", "--checkpoint-keep", "2", "--hf-export", "off", "--precision", "fp32",
            "--distributed-optimizer", "--init-from", stage_a["ckpt"]]
    t1 = torchrun([*base, "--checkpoint-uri", f"file://{root}/tp1"], nproc=1)
    t2 = torchrun([*base, "--checkpoint-uri", f"file://{root}/tp2", "--tensor", "2"], nproc=2)
    # the TP=1 run as it stood after step 3, then resumed with TP=2 (DP 1 -> 1, TP 1 -> 2)
    import shutil

    shutil.copytree(root / "tp1" / "iter_0000003", root / "re" / "iter_0000003")
    storage.write_json_atomic(f"file://{root}/re/latest", {"iteration": "iter_0000003", "step": 3})
    re = torchrun([*base, "--checkpoint-uri", f"file://{root}/re", "--tensor", "2"], nproc=2)
    return {"tp1": t1.stdout, "tp2": t2.stdout, "re": re.stdout}


def test_tp2_keeps_replicated_params_identical_and_matches_tp1(tp_runs):
    l1, l2 = losses(tp_runs["tp1"]), losses(tp_runs["tp2"])
    assert sorted(l1) == sorted(l2) == list(range(1, 7))
    assert l1[6] < l1[1]  # lr > 0: the weights really move
    for s in l1:
        assert abs(l2[s] - l1[s]) <= 1e-3 * abs(l1[s]), (s, l1, l2)
    checks = _events(tp_runs["tp2"], "replicaCheck")
    assert [c["step"] for c in checks] == [3, 6]
    assert all(c["maxDiff"] == 0.0 for c in checks), checks  # bit-identical across TP ranks


def test_resume_tp1_checkpoint_with_tp2_continues_the_curve(tp_runs):
    l1, lr_ = losses(tp_runs["tp1"]), losses(tp_runs["re"])
    assert sorted(lr_) == [4, 5, 6]
    ev = _events(tp_runs["re"], "resumed")[0]
    assert ev["checkpointParallel"]["tensor"] == 1 and ev["parallel"]["tensor"] == 2
    assert ev["rngRestored"] is False  # another layout: reseeded, and the log says so
    for s in (4, 5, 6):
        assert abs(lr_[s] - l1[s]) <= 1e-3 * abs(l1[s]), (s, l1, lr_)


def test_resume_is_refused_when_seed_batch_or_data_change(dataset, tmp_path, monkeypatch):
    from vlmops_jobs.common.result import JobError
    from vlmops_jobs.train import JOB, trainer

    ck = f"file://{tmp_path}/ckpt"
    base = ["--data", dataset["uri"], "--tokenizer", dataset["tokenizer"], "--preset", "tiny", "--train-iters", "2",
            "--checkpoint-uri", ck, "--checkpoint-interval", "1", "--hf-export", "off", "--metrics-port", "0"]
    torchrun([*base, "--global-batch", "2", "--seed", "1"], nproc=1,
             extra_env={"VLMOPS_TRAIN_CRASH_AFTER_STEP": "1"}, check=False)
    assert storage.read_json(f"{ck}/latest")["step"] == 1
    # the resume decision is taken before any process group exists: run the job's step in-process
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    other = make_packed_dataset(f"file://{tmp_path}/other", str(tmp_path / "tok2"), n_samples=6, capacity=150,
                                seed=9)
    for extra, what in ((["--global-batch", "2", "--seed", "2"], "seed 1 -> 2"),
                        (["--global-batch", "4", "--seed", "1"], "batch.global 2 -> 4")):
        with pytest.raises(JobError, match=what):
            trainer.run(JOB.parser("trainer").parse_args([*base, *extra]))
    with pytest.raises(JobError, match="the packed dataset"):
        trainer.run(JOB.parser("trainer").parse_args([base[0], other["uri"], *base[2:], "--global-batch", "2", "--seed", "1"]))
