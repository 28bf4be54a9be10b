"""Where retrieval runs: `--device auto|cpu|gpu`. The venv has faiss-cpu, so `auto` must search on the
CPU and `gpu` must be refused before anything is written. The GPU path is exercised through a stand-in
for faiss's GPU classes (what `index_cpu_to_gpu` returns, seen from Python: `ntotal` and
`search(q, k)`), which rounds differently from the CPU index as a GPU does: the shard's bytes must not
change. The real GPU check is benchmarks/gpu_retrieval.sh."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from vlmops_contract.layouts import balance as layout
from vlmops_jobs.balance import index as idx
from vlmops_jobs.common import storage
from vlmops_jobs.common.result import JobError

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_pool import make_pool, retrieve_args, run_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return make_pool(f"file://{tmp_path_factory.mktemp('dev')}", n=1500, c=400, d=24, files=2)


def shard_files(out: str) -> dict[str, bytes]:
    fs, path = storage.get_fs(out)
    fs.invalidate_cache()
    return {p[len(path):]: fs.cat(p) for p in sorted(fs.find(path)) if not p.endswith(".json")}


def marker(out: str) -> dict:
    return json.loads(storage.read_bytes(storage.join(out, layout.retrieve_shard(0, 1)["marker"])))


class GpuStandIn:
    """A GPU index seen from Python. Flat: float64 scores (from float16 vectors with useFloat16), so
    near-ties round differently from faiss's CPU sgemm. IVF: the CPU index's own search."""

    def __init__(self, cpu, float16: bool):
        self.ntotal, self.cpu = cpu.ntotal, cpu
        self.nprobe = faiss.extract_index_ivf(cpu).nprobe if "IVF" in type(cpu).__name__ else None
        self.x = None
        if isinstance(cpu, faiss.IndexFlat):
            x = cpu.reconstruct_n(0, cpu.ntotal)
            self.x = (x.astype(np.float16) if float16 else x).astype(np.float64)

    def search(self, q, k):
        if self.x is None:
            return self.cpu.search(q, k)
        s = q.astype(np.float64) @ self.x.T
        ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s, ids, axis=1).astype(np.float32), ids.astype(np.int64)


class FakeGpuFaiss:
    """faiss as a GPU build that sees one GPU: records every copy to the GPU, or fails it."""

    def __init__(self):
        self.copies: list[dict] = []
        self.fail: str | None = None

    def index_cpu_to_gpu(self, res, device, index, co):
        if self.fail:
            raise RuntimeError(self.fail)
        gpu = GpuStandIn(index, co.useFloat16)
        self.copies.append({"device": device, "float16": co.useFloat16, "res": res, "index": gpu,
                            "type": type(index).__name__, "nprobe": gpu.nprobe})
        return gpu


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = FakeGpuFaiss()

    class Options:
        useFloat16 = False

    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "GpuClonerOptions", Options, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake.index_cpu_to_gpu, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    return fake


def test_auto_searches_on_the_cpu_without_gpu_faiss_and_gives_the_cpu_bytes(pool, tmp_path, capsys):
    assert idx.gpu_unavailable() is not None  # the venv's faiss is faiss-cpu
    outs = {}
    for device in ("cpu", "auto"):
        outs[device] = f"file://{tmp_path}/{device}"
        rc, _, err = run_job(retrieve_args(pool, outs[device], 0, 1, "--device", device), capsys)
        assert rc == 0, err
        assert marker(outs[device])["index"]["device"] == "cpu"
        assert "on cpu: read" in err
    assert "device: cpu (this faiss build has no GPU support" in err
    assert shard_files(outs["cpu"]) == shard_files(outs["auto"])
    assert "device" not in marker(outs["auto"])["parameters"]


def test_gpu_is_refused_with_one_error_line_before_anything_is_written(pool, tmp_path, capsys):
    out = f"file://{tmp_path}/gpu"
    rc, _, err = run_job(retrieve_args(pool, out, 0, 1, "--device", "gpu"), capsys)
    assert rc == 2
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "retrieval device: gpu was asked for, but this faiss build has no GPU" in lines[0]
    assert not storage.exists(out)
    rc, _, err = run_job(retrieve_args(pool, out, 0, 1, "--device", "tpu"), capsys)
    assert rc == 2 and "invalid choice: 'tpu'" in err


@pytest.mark.parametrize("float16", [False, True])
def test_on_a_gpu_the_shard_is_byte_identical_to_the_cpu_one(pool, tmp_path, capsys, fake_gpu, float16):
    cpu_out, gpu_out = f"file://{tmp_path}/cpu", f"file://{tmp_path}/gpu"
    assert run_job(retrieve_args(pool, cpu_out, 0, 1, "--device", "cpu"), capsys)[0] == 0
    assert not fake_gpu.copies
    flags = ("--device", "auto") + (("--gpu-float16",) if float16 else ())
    rc, _, err = run_job(retrieve_args(pool, gpu_out, 0, 1, *flags), capsys)
    assert rc == 0, err
    (copy,) = fake_gpu.copies
    assert copy["device"] == 0 and copy["float16"] is float16 and copy["type"] == "IndexFlat"
    assert copy["index"].referenced_objects == [copy["res"]]  # the resources live as long as the index
    m = marker(gpu_out)
    assert m["index"]["device"] == "gpu" and m["index"]["float16"] is float16
    assert m["parameters"].get("gpuFloat16", False) is float16
    assert "on gpu: read" in err
    # the stand-in's scores differ from the CPU's in the last bits (and by ~1e-3 from float16
    # vectors); candidates are rescored on the CPU, so the shard's bytes do not change
    q = np.random.default_rng(0).standard_normal((64, pool["d"])).astype(np.float32)
    cpu_index = faiss.IndexFlatIP(pool["d"])
    cpu_index.add(copy["index"].x.astype(np.float32))
    assert not np.array_equal(copy["index"].search(q, 5)[0], cpu_index.search(q, 5)[0])
    assert shard_files(gpu_out) == shard_files(cpu_out)


def test_the_gpu_copy_takes_the_jobs_nprobe(pool, tmp_path, capsys, fake_gpu):
    out = f"file://{tmp_path}/ivf"
    rc, res, err = run_job(retrieve_args(pool, out, 0, 1, "--index", "IVF8,Flat", "--nprobe", "3",
                                         "--recall-sample", "300", "--device", "gpu"), capsys)
    assert rc == 0, err
    (copy,) = fake_gpu.copies
    assert copy["type"] == "IndexIVFFlat" and copy["nprobe"] == 3
    assert 0 < res["retrievalRecall"] <= 1


def test_a_failed_copy_falls_back_to_the_cpu_under_auto_and_is_an_error_under_gpu(pool, tmp_path, capsys,
                                                                                    fake_gpu):
    fake_gpu.fail = "Error in ToGpuCloner: this index type is not implemented on GPU.\ntrace"
    out = f"file://{tmp_path}/hnsw"
    args = retrieve_args(pool, out, 0, 1, "--index", "HNSW8", "--recall-sample", "0")
    rc, _, err = run_job(args, capsys)
    assert rc == 0, err
    assert "device: cpu (faiss could not copy HNSW8 to the GPU: Error in ToGpuCloner" in err
    assert marker(out)["index"]["device"] == "cpu"
    rc, _, err = run_job(retrieve_args(pool, f"file://{tmp_path}/hnsw2", 0, 1, "--index", "HNSW8",
                                       "--device", "gpu"), capsys)
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "could not copy 'HNSW8' to the GPU" in lines[0]


def test_searches_past_the_gpu_limits_stay_on_the_cpu(fake_gpu, capsys):
    assert idx.choose_device("auto", 5, 400, None) == "gpu"
    assert idx.choose_device("cpu", 5, 400, None) == "cpu"
    assert idx.candidates(1024, 10**6) == idx.GPU_MAX_K  # the API's largest top-k still fits
    for k, nprobe, what in ((1025, None, "top-k 1025 searches 2050 candidates"), (5, 4096, "nprobe 4096")):
        assert idx.choose_device("auto", k, 10**6, nprobe) == "cpu"
        assert what in capsys.readouterr().err
        with pytest.raises(JobError, match=f"gpu was asked for, but {what}"):
            idx.choose_device("gpu", k, 10**6, nprobe)


def test_the_data_image_installs_faiss_gpu_instead_of_faiss_cpu_in_its_gpu_variant(tmp_path):
    """Runs the Dockerfile's own pins step (everything before `pip install`) for FAISS=cpu|gpu|bad."""
    text = re.sub(r"\\\n", " ", (ROOT / "images" / "data" / "Dockerfile").read_text())
    args = {k: v.strip('"') for k, v in re.findall(r"^ARG (\w+)=(.*)$", text, re.M)}
    (run,) = [line[4:] for line in text.splitlines() if line.startswith("RUN ") and "images/pins.py" in line]
    step = run.split(" && pip install", 1)[0].replace("python images/pins.py", f"{shlex.quote(sys.executable)} "
                                                                                 "images/pins.py")
    got = {}
    for variant in ("cpu", "gpu", "tpu"):
        out = tmp_path / variant
        env = {**args, "FAISS": variant, "PATH": "/usr/bin:/bin"}
        r = subprocess.run(["sh", "-c", step.replace("/tmp/pins", str(out))], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        got[variant] = (r.returncode, (out / "requirements.txt").read_text().split() if out.exists() else [], r.stderr)
    assert got["tpu"][0] != 0 and "FAISS must be cpu or gpu" in got["tpu"][2]
    cpu, gpu = got["cpu"][1], got["gpu"][1]
    assert got["cpu"][0] == got["gpu"][0] == 0, got
    version = args["FAISS_VERSION"]
    assert f"faiss-cpu=={version}" in cpu and not [x for x in cpu if x.startswith("faiss-gpu")]
    assert f"faiss-gpu=={version}" in gpu and not [x for x in gpu if x.startswith("faiss-cpu")]
    # the CUDA 12 runtime faiss-gpu loads is pinned too (the lock only has the training image's CUDA 13)
    for lib in ("nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12", "nvidia-curand-cu12"):
        assert [x for x in gpu if x.startswith(f"{lib}==")], lib
    assert "faiss-cpu==" not in (tmp_path / "gpu" / "constraints.txt").read_text()


def test_the_gpu_benchmark_runs_in_smoke_mode_and_refuses_a_full_run_without_a_gpu():
    """benchmarks/gpu_retrieval.py on a CPU: --smoke runs every step (the CPU index standing in for the
    GPU one) and passes; a full run says why it cannot run and exits 2."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "jobs:operator", "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "benchmarks" / "gpu_retrieval.py")
    r = subprocess.run([sys.executable, script, "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["pass"] and summary["equality"]["float32"]["rawTopK"]["rows"] == 256
    assert summary["gpu"]["float16"]["queriesPerSecond"] > 0 and summary["gpu"]["float32"]["vsPeak"] > 0
    r = subprocess.run([sys.executable, script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no GPU search here" in json.loads(r.stdout.strip().splitlines()[-1])["error"]
