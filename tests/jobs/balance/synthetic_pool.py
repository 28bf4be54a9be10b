"""Synthetic Zipf-distributed pools and the in-process CLI for the BalancedCorpus tests (no tests here)."""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmops_contract.result import parse_result
from vlmops_jobs.balance import JOB
from vlmops_jobs.common import storage


def run_job(argv: list[str], capsys) -> tuple[int, dict | None, str]:
    """`python -m vlmops_jobs.balance <argv>` in-process: (exit code, result line, stderr)."""
    rc = JOB.run(argv)
    out, err = capsys.readouterr()
    return rc, parse_result(out), err


def write_parquet(uri: str, table: pa.Table, row_group_size: int | None = None) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size)
    storage.write_bytes_atomic(uri, buf.getvalue())


def emb_array(m: np.ndarray, dtype=pa.float32()) -> pa.Array:
    n, d = m.shape
    flat = pa.array(m.reshape(-1).astype(np.float16 if dtype == pa.float16() else np.float32), dtype)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), flat)


def make_pool(root: str, n: int = 20000, c: int = 2000, d: int = 64, files: int = 3, seed: int = 7,
              zipf: float = 1.1, sample_columns: bool = True, dtype=pa.float32()) -> dict[str, object]:
    """Concepts: c random unit vectors. Each sample holds 1-2 concepts drawn from a Zipf law
    (rank r with probability ~ r^-zipf); its embedding is their normalised sum plus noise."""
    rng = np.random.default_rng(seed)
    cv = rng.standard_normal((c, d)).astype(np.float32)
    cv /= np.linalg.norm(cv, axis=1, keepdims=True)
    w = 1.0 / np.arange(1, c + 1) ** zipf
    w /= w.sum()
    first = rng.choice(c, size=n, p=w)
    second = rng.choice(c, size=n, p=w)
    two = rng.random(n) < 0.3
    x = cv[first] + np.where(two[:, None], cv[second], 0) + 0.15 * rng.standard_normal((n, d)).astype(np.float32)
    x = x.astype(np.float32) * rng.uniform(0.5, 3.0, size=(n, 1)).astype(np.float32)  # unnormalised on purpose
    ids = [f"s{i:07d}" for i in rng.permutation(n)]
    src = storage.join(root, "pool")
    bounds = np.linspace(0, n, files + 1).astype(int)
    for j in range(files):
        a, b = bounds[j], bounds[j + 1]
        cols = {"id": pa.array(ids[a:b], pa.string())}
        if sample_columns:
            cols["images"] = pa.array([[f"img/{ids[i]}.jpg"] if i % 5 else [] for i in range(a, b)],
                                      pa.list_(pa.string()))
            cols["conversations"] = pa.array(
                [json.dumps([{"role": "user", "content": "<image>\nDescribe."},
                             {"role": "assistant", "content": f"caption {i}"}]) for i in range(a, b)], pa.string())
        cols["embedding"] = emb_array(x[a:b], dtype)
        write_parquet(storage.join(src, f"part-{j:03d}.parquet"), pa.table(cols), row_group_size=2500)
    con = storage.join(root, "concepts", "concepts.parquet")
    write_parquet(con, pa.table({"text": pa.array([f"concept {i}" for i in range(c)]),
                                 "embedding": emb_array(cv)}))
    return {"source": src, "concepts": con, "ids": ids, "first": first, "n": n, "c": c, "d": d}


def retrieve_args(pool, output: str, shard: int, shards: int, *extra: str) -> list[str]:
    return ["retrieve", "--source", pool["source"], "--id-field", "id", "--embedding-field", "embedding",
            "--concepts", pool["concepts"], "--concept-text-field", "text", "--concept-embedding-field", "embedding",
            "--top-k", "3", "--min-similarity", "0.35", "--shard", str(shard), "--shards", str(shards),
            "--output", output, *extra]


def balance_args(output: str, shards: int, *extra: str) -> list[str]:
    return ["balance", "--method", "MetaCLIP", "--threshold", "40", "--seed", "11", "--shards", str(shards),
            "--part-rows", "2000", "--output", output, *extra]


def run_all(pool, output, shards, capsys, retrieve_extra=(), balance_extra=()):
    results = []
    for i in range(shards):
        rc, res, err = run_job(retrieve_args(pool, output, i, shards, *retrieve_extra), capsys)
        assert rc == 0, err
        results.append(res)
    rc, res, err = run_job(balance_args(output, shards, *balance_extra), capsys)
    assert rc == 0, err
    return results, res, err


def read_selected(output):
    """The selection as readers take it: the parts its manifest names."""
    files = storage.read_json(storage.join(output, "manifest.json"))["files"]
    parts = sorted(name for name in files if name.startswith("selected/"))
    return pa.concat_tables([pq.read_table(io.BytesIO(storage.read_bytes(storage.join(output, p)))) for p in parts])
