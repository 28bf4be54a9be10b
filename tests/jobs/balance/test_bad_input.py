"""BalancedCorpus job: bad input exits 2 with one clear line and writes nothing final."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from vlmops_jobs.common import storage

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_pool import balance_args, emb_array, make_pool, retrieve_args, run_job, write_parquet  # noqa: E402


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return make_pool(f"file://{tmp_path_factory.mktemp('bad')}", n=300, c=50, d=16, files=2)


def files_under(root: str) -> list[str]:
    fs, path = storage.get_fs(root)
    return sorted(fs.find(path)) if fs.exists(path) else []


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def _bad_tables(root: str, pool) -> dict[str, str]:
    rng = np.random.default_rng(0)
    out = {}
    out["dim"] = storage.join(root, "dim.parquet")
    write_parquet(out["dim"], pa.table({"id": ["a", "b"], "embedding": emb_array(rng.standard_normal((2, 8)))}))
    nan = rng.standard_normal((3, 16)).astype(np.float32)
    nan[1, 3] = np.nan
    out["nan"] = storage.join(root, "nan.parquet")
    write_parquet(out["nan"], pa.table({"id": ["a", "b", "c"], "embedding": emb_array(nan)}))
    out["empty"] = storage.join(root, "empty.parquet")
    write_parquet(out["empty"], pa.table({"id": pa.array([], pa.string()),
                                          "embedding": pa.array([], pa.list_(pa.float32()))}))
    out["ragged"] = storage.join(root, "ragged.parquet")
    write_parquet(out["ragged"], pa.table({"id": ["a", "b"], "embedding": [[1.0] * 16, [1.0] * 15]}))
    return out


CASES = [
    # (name, how to change the retrieve args, expected fragment of the error line)
    ("missing-uri", lambda a, b, r: _replace(a, "--source", r + "/nope"), "source uri:"),
    ("id-column", lambda a, b, r: _replace(a, "--id-field", "sample_id"), "source id-field: column 'sample_id'"),
    ("emb-column", lambda a, b, r: _replace(a, "--embedding-field", "clip"), "source embedding-field: column 'clip'"),
    ("concept-column", lambda a, b, r: _replace(a, "--concept-embedding-field", "vec"),
     "concepts embedding-field: column 'vec'"),
    ("concept-text", lambda a, b, r: _replace(a, "--concept-text-field", "name"), "concepts text-field: column 'name'"),
    ("dimension", lambda a, b, r: _replace(a, "--source", b["dim"]), "does not match concepts embedding-field dimension"),
    ("nan", lambda a, b, r: _replace(a, "--source", b["nan"]), "source embedding-field: 1 vectors contain NaN"),
    ("ragged", lambda a, b, r: _replace(a, "--source", b["ragged"]), "source embedding-field: vectors of different"),
    ("empty-source", lambda a, b, r: _replace(a, "--source", b["empty"]), "source uri: shard 0 of 1 is empty"),
    ("empty-shard", lambda a, b, r: _replace(a, "--shards", "500"), "source uri: shard 0 of 500 is empty"),
    ("k-too-large", lambda a, b, r: _replace(a, "--top-k", "51"), "retrieval top-k: 51 is larger than the concept"),
    ("bad-factory", lambda a, b, r: a + ["--index", "NotAnIndex"], "retrieval index:"),
    ("shard-range", lambda a, b, r: _replace(a, "--shard", "1"), "retrieve shard: 1 is not in [0, 1)"),
    ("bad-flag", lambda a, b, r: a + ["--bogus", "1"], "arguments:"),
]


@pytest.mark.parametrize("name,change,msg", CASES, ids=[c[0] for c in CASES])
def test_bad_retrieve_input_exits_2_with_one_line_and_writes_nothing(pool, tmp_path, capsys, name, change, msg):
    root = f"file://{tmp_path}"
    bad = _bad_tables(root + "/bad", pool)
    out = root + "/out"
    args = change(retrieve_args(pool, out, 0, 1), bad, root)
    rc, res, err = run_job(args, capsys)
    assert rc == 2, err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and msg in lines[0], err
    assert res is None
    assert files_under(out) == []


def test_the_shard_comes_from_job_completion_index(pool, tmp_path, capsys, monkeypatch):
    out = f"file://{tmp_path}/out"
    args = retrieve_args(pool, out, 0, 2)
    i = args.index("--shard")
    del args[i:i + 2]
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    rc, _, err = run_job(args, capsys)
    assert rc == 2 and "JOB_COMPLETION_INDEX" in err
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    rc, res, err = run_job(args, capsys)
    assert rc == 0 and res["shard"] == 1


def test_bad_balance_input_exits_2_and_keeps_the_previous_output(pool, tmp_path, capsys):
    out = f"file://{tmp_path}/out"
    rc, _, err = run_job(balance_args(out, 1), capsys)
    assert rc == 2 and "shard 0 of 1 is not committed" in err
    assert files_under(out) == []
    assert run_job(retrieve_args(pool, out, 0, 1), capsys)[0] == 0
    rc, res, err = run_job(balance_args(out, 1), capsys)
    assert rc == 0, err
    before = {p: storage.read_bytes("file://" + p) for p in files_under(out)}
    for args, msg in [
        (balance_args(out, 2), "shard 0 of 2 is not committed"),
        (_replace(balance_args(out, 1), "--method", "Random"), "balancing method: 'Random'"),
        (_replace(balance_args(out, 1), "--threshold", "-3"), "balancing threshold: -3.0 must be a positive"),
        (balance_args(out, 1, "--target-samples", "10"), "arguments:"),  # with --threshold: exclusive
        (balance_args(out, 1, "--source", "s3://elsewhere"), "balance source:"),
        (_replace(balance_args(out, 1), "--part-rows", "0"), "balance part-rows: 0 must be >= 1"),
    ]:
        rc, res2, err = run_job(args, capsys)
        assert rc == 2 and res2 is None, err
        lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
        assert len(lines) == 1 and msg in lines[0], err
    after = {p: storage.read_bytes("file://" + p) for p in files_under(out)}
    assert after == before
    # the source changed since retrieval: refused, previous output intact
    extra = storage.join(pool["source"], "part-999.parquet")
    write_parquet(extra, pa.table({"id": ["zz"], "embedding": emb_array(np.ones((1, 16), np.float32))}))
    try:
        rc, _, err = run_job(balance_args(out, 1), capsys)
        assert rc == 2 and "changed since retrieval" in err
    finally:
        fs, p = storage.get_fs(extra)
        fs.rm(p)
    assert {p: storage.read_bytes("file://" + p) for p in files_under(out)} == before
    # neither threshold nor target: MetaCLIP's default t = 20000 (keeps everything here)
    args = [a for a in balance_args(out, 1)]
    i = args.index("--threshold")
    del args[i:i + 2]
    rc, res, err = run_job(args, capsys)
    assert rc == 0 and res["stats"]["threshold"] == 20000.0
    full = json.loads(storage.read_bytes(storage.join(out, "stats.json")))
    assert res["stats"]["selectedSamples"] == res["stats"]["inputSamples"] - full["samplesWithoutConcepts"]
    assert json.loads(storage.read_bytes(storage.join(out, "manifest.json")))["parameters"]["threshold"] == 20000.0


def test_a_duplicate_id_is_bad_input(tmp_path, capsys):
    root = f"file://{tmp_path}"
    rng = np.random.default_rng(1)
    write_parquet(f"{root}/s.parquet", pa.table({"id": ["a", "b", "a"], "embedding": emb_array(rng.standard_normal((3, 4)))}))
    write_parquet(f"{root}/c.parquet", pa.table({"text": ["x", "y"], "embedding": emb_array(rng.standard_normal((2, 4)))}))
    out = f"{root}/out"
    assert run_job(["retrieve", "--source", f"{root}/s.parquet", "--concepts", f"{root}/c.parquet", "--top-k", "1",
                "--shard", "0", "--output", out], capsys)[0] == 0
    rc, _, err = run_job(["balance", "--threshold", "1", "--output", out], capsys)
    assert rc == 2 and "source id-field: id 'a' appears more than once" in err
    assert not storage.exists(f"{out}/manifest.json")
