"""lengths -> plan -> write on a synthetic multimodal set, on file:// and moto S3; energon reads it back."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlmops_jobs.common import storage, synthetic
from vlmops_contract.result import parse_result
from vlmops_jobs.pack import job
from vlmops_jobs.pack.lengths import image_tokens, smart_resize


@pytest.fixture
def bucket(s3_server):
    """A fresh bucket on the shared moto server (created without a location constraint, which
    moto rejects for us-east-1)."""
    import uuid

    import boto3

    name = f"p-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}"


def run(capsys, *argv):
    job.main(list(argv))
    return parse_result(capsys.readouterr().out)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return synthetic.make_tokenizer(str(tmp_path_factory.mktemp("tok")))


def test_smart_resize_matches_qwen_rule():
    assert smart_resize(28, 28) == (56, 56)  # below min_pixels -> scaled up
    assert smart_resize(224, 224) == (224, 224)
    h, w = smart_resize(4000, 3000, max_pixels=2560000)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 2560000
    assert image_tokens(224, 224) == 64
    assert image_tokens(32, 32) == 4


def pipeline(capsys, src, out, tok, shards=2, cap=2048, per=7):
    for i in range(shards):
        r = run(capsys, "lengths", "--source", src, "--tokenizer", tok, "--shard", str(i), "--shards", str(shards), "--output", out)
        assert r["stats"]["shard"] == i
    plan = run(capsys, "plan", "--sequence-length", str(cap), "--shards", str(shards), "--output", out)
    res = None
    for i in range(shards):
        res = run(capsys, "write", "--shard-size-samples", str(per), "--format", "energon", "--shard", str(i), "--shards", str(shards), "--output", out)
    return plan, res


def load_tars(out):
    import webdataset as wds

    fs, path = storage.get_fs(out)
    seqs = []
    for p in sorted(fs.glob(path.rstrip("/") + "/shards/*.tar")):
        for s in wds.WebDataset(_local(fs, p), shardshuffle=False):
            seqs.append(s)
    return seqs


def _local(fs, p):
    import tempfile

    d = tempfile.mkdtemp()
    fs.get(p, d + "/x.tar")
    return d + "/x.tar"


def check_roundtrip(src_dir, out, plan, final, cap):
    st = plan["stats"]
    assert set(st) >= {"samples", "sequences", "lowerBoundSequences", "compressionRatio", "packingEfficiency",
                       "tokens", "paddingTokens", "droppedTooLong"}
    assert final["stats"]["sequences"] == st["sequences"]
    assert set(final["output"]) == {"uri", "manifest", "digest"}
    assert len(json.dumps({"vlmopsResult": final})) < 4096
    src = pq.read_table(storage.get_fs(src_dir + "/samples.parquet")[1], filesystem=storage.get_fs(src_dir)[0]).to_pylist()
    by_id = {r["id"]: r for r in src}
    seqs = load_tars(out)
    assert len(seqs) == st["sequences"]
    seen = []
    for s in seqs:
        meta = json.loads(s["json"])
        assert meta["tokens"] <= cap and meta["capacity"] == cap
        assert meta["cuSeqlens"][-1] == meta["tokens"] and len(meta["cuSeqlens"]) == len(meta["samples"]) + 1
        for smp in meta["samples"]:
            seen.append(smp["id"])
            orig = by_id[smp["id"]]
            assert smp["conversations"] == json.loads(orig["conversations"])
            assert len(smp["images"]) == len(orig["images"]) == len(smp["imageTokens"])
            for name, rel in zip(smp["images"], orig["images"]):
                assert s[name] == storage.read_bytes(storage.join(src_dir, rel))
    assert sorted(seen) == sorted(by_id)  # every sample exactly once (none too long here)
    assert st["droppedTooLong"] == 0


def test_end_to_end_file(tmp_path, tok, capsys):
    src = f"file://{tmp_path}/src"
    synthetic.make_samples(src, 120, seed=4)
    out = f"file://{tmp_path}/out"
    plan, final = pipeline(capsys, src, out, tok)
    check_roundtrip(src, out, plan, final, 2048)
    man1 = open(f"{tmp_path}/out/manifest.json", "rb").read()
    # re-run: finished shards are reused, manifest byte-identical
    plan2, final2 = pipeline(capsys, src, out, tok)
    assert open(f"{tmp_path}/out/manifest.json", "rb").read() == man1
    assert final2["output"]["digest"] == final["output"]["digest"]
    # a fresh run elsewhere gives the same manifest except for the output paths
    out2 = f"file://{tmp_path}/out2"
    pipeline(capsys, src, out2, tok)
    m1, m2 = json.loads(man1), json.load(open(f"{tmp_path}/out2/manifest.json"))
    assert m1["files"] == m2["files"] and m1["stats"] == m2["stats"]
    # Megatron-Energon opens it and yields every sequence
    energon_count(f"{tmp_path}/out", plan["stats"]["sequences"])
    # explicit finalize is idempotent
    r = run(capsys, "finalize", "--format", "energon", "--shards", "2", "--output", out)  # as the builder calls it
    assert r["output"]["digest"] == final["output"]["digest"]


def energon_count(path, expected):
    pytest.importorskip("megatron.energon")
    code = f"""
import json
from megatron.energon import Cooker, DefaultTaskEncoder, WorkerConfig, get_loader, get_val_dataset
from vlmops_jobs.pack.reader import cook_packed
class TE(DefaultTaskEncoder):
    cookers = [Cooker(cook_packed)]
    def encode_sample(self, s): return s
    def batch(self, samples): return samples
wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
ds = get_val_dataset({path!r}, split_part="train", batch_size=None, worker_config=wc, task_encoder=TE())
out = []
for s in get_loader(ds):
    m = s.meta
    assert sorted(s.images) == sorted(n for x in m["samples"] for n in x["images"])
    out.append(m["sequence"])
print(json.dumps(sorted(out)))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "PYTHONPATH": "jobs"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == list(range(expected))


def test_end_to_end_s3(bucket, tok, capsys):
    src = f"{bucket}/src"
    synthetic.make_samples(src, 60, seed=5)
    out = f"{bucket}/packed"
    plan, final = pipeline(capsys, src, out, tok, shards=3, cap=4096, per=3)
    check_roundtrip(src, out, plan, final, 4096)
    assert storage.exists(f"{out}/.nv-meta/dataset.yaml") and storage.exists(f"{out}/manifest.json")


def test_bad_inputs(tmp_path, tok, capsys):
    import pyarrow as pa

    src = tmp_path / "src"
    info = synthetic.make_samples(str(src), 12, seed=2)
    out = str(tmp_path / "out")
    # tokenizer missing
    with pytest.raises(job.JobError, match="tokenizer"):
        job.main(["lengths", "--source", str(src), "--tokenizer", str(tmp_path / "nope"), "--shard", "0", "--output", out])
    # duplicate ids
    t = pq.read_table(info["samples"]).to_pylist()
    t[3]["id"] = t[2]["id"]
    pq.write_table(pa.Table.from_pylist(t), str(src / "samples.parquet"))
    with pytest.raises(job.JobError, match=f"sample {t[2]['id']} id: duplicate"):
        job.main(["lengths", "--source", str(src), "--tokenizer", tok, "--shard", "0", "--output", out])
    # unreadable image
    t[3]["id"] = "x3"
    k = next(i for i, r in enumerate(t) if r["images"])
    (src / t[k]["images"][0]).write_bytes(b"not a png")
    pq.write_table(pa.Table.from_pylist(t), str(src / "samples.parquet"))
    with pytest.raises(job.JobError, match=f"sample {t[k]['id']} images: unreadable"):
        job.main(["lengths", "--source", str(src), "--tokenizer", tok, "--shard", "0", "--output", out])
    # sample without text
    t = pq.read_table(info["samples"]).to_pylist()
    t[3]["id"] = "x3"
    t[5]["conversations"] = json.dumps([{"role": "user", "content": ""}])
    t[5]["images"] = []
    t[k]["images"] = []
    t[k]["conversations"] = json.dumps([{"role": "user", "content": "hi"}])
    pq.write_table(pa.Table.from_pylist(t), str(src / "samples.parquet"))
    with pytest.raises(job.JobError, match=f"sample {t[5]['id']} conversations: no text"):
        job.main(["lengths", "--source", str(src), "--tokenizer", tok, "--shard", "0", "--output", out])
    # capacity smaller than every sample: exit code 2 through the CLI, nothing final written
    t[5]["conversations"] = json.dumps([{"role": "user", "content": "hello"}])
    pq.write_table(pa.Table.from_pylist(t), str(src / "samples.parquet"))
    job.main(["lengths", "--source", str(src), "--tokenizer", tok, "--shard", "0", "--output", out])
    capsys.readouterr()
    p = subprocess.run([sys.executable, "-m", "vlmops_jobs.pack", "plan", "--sequence-length", "5", "--output", out],
                       capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": "jobs"})
    assert p.returncode == 2 and p.stderr.startswith("error: spec sequenceLength")
    assert not storage.exists(f"{out}/plan/manifest.json")
    # a capacity between: long samples are dropped and counted, or truncated
    L = pq.read_table(f"{out}/lengths/part-00000.parquet").column("tokens").to_numpy()
    cap = int(np.sort(L)[-3])
    r = run(capsys, "plan", "--sequence-length", str(cap), "--output", out)
    assert r["stats"]["droppedTooLong"] == int((L > cap).sum()) > 0
    r = run(capsys, "plan", "--sequence-length", str(cap), "--truncate", "--output", out)
    assert r["stats"]["droppedTooLong"] == 0 and r["stats"]["truncated"] == int((L > cap).sum())
