"""BalancedCorpus job: retrieve + balance on a synthetic Zipf pool, on file:// and on S3 (moto)."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_pool import balance_args, make_pool, read_selected, retrieve_args, run_all, run_job  # noqa: E402

from vlmops_jobs.common import image_refs, storage  # noqa: E402


@pytest.fixture(scope="module")
def file_pool(tmp_path_factory):
    root = f"file://{tmp_path_factory.mktemp('pool')}"
    return make_pool(root)


def test_metaclip_keeps_every_tail_sample_and_flattens_the_distribution(file_pool, file_root, capsys):
    out = storage.join(file_root, "bc")
    shard_res, res, err = run_all(file_pool, out, 2, capsys)
    assert [r["shard"] for r in shard_res] == [0, 1]
    assert "items/s" in err and "bytes/s" in err
    s = res["stats"]
    assert s["inputSamples"] == file_pool["n"]
    assert 0 < s["selectedSamples"] < s["inputSamples"]
    assert s["threshold"] == 40.0
    assert s["after"]["entropyBits"] > s["before"]["entropyBits"]
    assert s["after"]["gini"] < s["before"]["gini"]
    assert s["after"]["headShare"] < s["before"]["headShare"]
    assert s["after"]["effectiveConcepts"] > s["before"]["effectiveConcepts"]
    assert s["before"]["conceptsCovered"] >= s["before"]["conceptsCovered10"]
    assert "retrievalRecall" not in s  # Flat is exact
    assert set(s) == {"inputSamples", "selectedSamples", "threshold", "before", "after"}
    assert set(s["after"]) == {"conceptsCovered", "conceptsCovered10", "entropyBits", "effectiveConcepts", "gini",
                               "headShare"}
    assert res["progress"] == {"shardsCompleted": 2, "shardsTotal": 2}
    assert len(json.dumps({"vlmopsResult": res})) < 4096

    # every sample holding a tail concept (count <= t) is kept
    counts = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(out, "concept-counts.parquet"))))
    before = counts.column("before").to_numpy()
    tail = before <= 40
    rows = pq.read_table(io.BytesIO(storage.read_bytes(
        storage.join(out, "retrieve/shards-00002/shard-00000.parquet"))))
    import pyarrow as pa

    rows = pa.concat_tables([rows, pq.read_table(io.BytesIO(storage.read_bytes(
        storage.join(out, "retrieve/shards-00002/shard-00001.parquet"))))])
    sel = read_selected(out)
    selected = set(sel.column("id").to_pylist())
    must = {i for i, cs in zip(rows.column("id").to_pylist(), rows.column("concepts").to_pylist())
            if any(tail[c] for c in cs)}
    assert must and must <= selected
    assert len(selected) == s["selectedSamples"]
    # the retrieved top-1 is the sample's dominant concept for nearly all samples
    got = dict(zip(rows.column("id").to_pylist(), rows.column("concepts").to_pylist()))
    truth = dict(zip(file_pool["ids"], file_pool["first"]))
    assert np.mean([truth[i] in got[i] for i in truth]) > 0.95

    # output layout and contents
    assert sel.column_names == ["id", "images", "conversations", "concepts"]
    imgs = [x for l in sel.column("images").to_pylist() for x in l]
    # images relative to the source's root, which the manifest records as a location (outside identity)
    assert imgs and all(x.startswith("img/") for x in imgs)
    root = storage.read_json(storage.join(out, "manifest.json"))["locations"]["imageRoot"]
    assert root.startswith("file:///") and image_refs.resolve(root, imgs[0]) == f"{root}/{imgs[0]}"
    after = counts.column("after").to_numpy()
    assert after.sum() == sum(len(c) for c in sel.column("concepts").to_pylist())
    manifest = json.loads(storage.read_bytes(storage.join(out, "manifest.json")))
    assert set(manifest["files"]) >= {"stats.json", "concept-counts.parquet", "plots/concept-frequency.png",
                                      "plots/kept-by-frequency.png", "selected/part-00000.parquet"}
    for rel, digest in manifest["files"].items():
        assert storage.sha256_uri(storage.join(out, rel)) == digest
    assert storage.read_bytes(storage.join(out, "plots/concept-frequency.png"))[:4] == b"\x89PNG"
    assert res["output"]["manifest"] == storage.join(out, "manifest.json")
    assert res["output"]["digest"] == storage.sha256_uri(storage.join(out, "manifest.json"))
    assert len(manifest["inputs"]["source"]) == 3 and all(x["digest"].startswith("sha256:")
                                                          for x in manifest["inputs"]["source"])

    # balance again: same manifest, reported as already done
    rc, res2, err2 = run_job(balance_args(out, 2), capsys)
    assert rc == 0 and res2 == res and "skipping" in err2


def test_target_samples_solves_t_for_metaclip_and_inverse_frequency(file_pool, file_root, capsys):
    out = storage.join(file_root, "bc")
    for i in range(2):
        assert run_job(retrieve_args(file_pool, out, i, 2), capsys)[0] == 0
    rc, res, err = run_job(["balance", "--method", "MetaCLIP", "--target-samples", "6000", "--shards", "2",
                        "--output", out], capsys)
    assert rc == 0, err
    s = res["stats"]
    full = json.loads(storage.read_bytes(storage.join(out, "stats.json")))
    assert abs(full["expectedSamples"] - 6000) < 1.0 and full["keptFraction"] == round(s["selectedSamples"] / 20000, 6)
    assert abs(s["selectedSamples"] - 6000) < 300
    t_meta = s["threshold"]
    rc, res, err = run_job(["balance", "--method", "InverseFrequency", "--target-samples", "6000", "--shards", "2",
                        "--output", out], capsys)
    assert rc == 0, err
    s2 = res["stats"]
    assert abs(s2["selectedSamples"] - 6000) < 300 and s2["threshold"] != t_meta
    assert s2["after"]["entropyBits"] > s2["before"]["entropyBits"]
    manifest = json.loads(storage.read_bytes(storage.join(out, "manifest.json")))
    assert manifest["parameters"]["method"] == "InverseFrequency"
    assert manifest["parameters"]["targetSamples"] == 6000


def test_the_output_on_s3_is_the_same_for_any_shard_count(s3_bucket, capsys):
    pool = make_pool(storage.join(s3_bucket, "in"), n=6000, c=600, d=32, files=2)
    m = {}
    for shards in (1, 3):
        out = storage.join(s3_bucket, f"out{shards}")
        _, res, _ = run_all(pool, out, shards, capsys)
        m[shards] = storage.read_bytes(storage.join(out, "manifest.json"))
        sel = read_selected(out)
        assert sel.num_rows == res["stats"]["selectedSamples"]
        assert all(x.startswith("img/") for l in sel.column("images").to_pylist() for x in l)
        assert storage.read_json(storage.join(out, "manifest.json"))["locations"]["imageRoot"] == s3_bucket + "/in/pool"
    assert m[1] == m[3]
    # and the data files too (the manifest lists their digests)
    assert json.loads(m[1])["files"] == json.loads(m[3])["files"]
