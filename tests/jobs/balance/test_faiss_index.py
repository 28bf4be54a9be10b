"""The concept index: a trained index is stored once and reused, recall is measured; top-k does not
depend on how the queries are batched."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_pool import balance_args, make_pool, read_selected, retrieve_args, run_job  # noqa: E402

from vlmops_jobs.common import storage  # noqa: E402


def test_an_ivf_index_is_built_once_reused_and_its_recall_reported(tmp_path, capsys):
    pool = make_pool(f"file://{tmp_path}/in", n=3000, c=1000, d=32, files=1, sample_columns=False,
                     dtype=__import__("pyarrow").float16())
    out = f"file://{tmp_path}/out"
    extra = ("--index", "IVF16,Flat", "--nprobe", "2", "--recall-sample", "500")
    rc, r0, err0 = run_job(retrieve_args(pool, out, 0, 2, *extra), capsys)
    assert rc == 0, err0
    assert "built IVF16,Flat" in err0 and storage.exists(f"{out}/index/index.faiss")
    rc, r1, err1 = run_job(retrieve_args(pool, out, 1, 2, *extra), capsys)
    assert rc == 0 and "reusing stored IVF16,Flat" in err1
    assert 0 < r0["retrievalRecall"] <= 1
    rc, res, err = run_job(balance_args(out, 2), capsys)
    assert rc == 0, err
    s = res["stats"]
    assert 0 < s["retrievalRecall"] < 1
    assert 300 < json.loads(storage.read_bytes(f"{out}/stats.json"))["recallQueries"] < 700
    sel = read_selected(out)
    assert sel.column_names == ["id", "concepts"]
    manifest = json.loads(storage.read_bytes(f"{out}/manifest.json"))
    assert manifest["inputs"]["index"]["digest"] == storage.sha256_uri(f"{out}/index/index.faiss")
    # a different shard count on the same output reuses the index and gives the same manifest
    first = storage.read_bytes(f"{out}/manifest.json")
    rc, _, err = run_job(retrieve_args(pool, out, 0, 1, *extra), capsys)
    assert rc == 0 and "reusing stored" in err
    assert run_job(balance_args(out, 1), capsys)[0] == 0
    assert storage.read_bytes(f"{out}/manifest.json") == first
    # more probes -> higher recall (the trade-off the benchmark measures)
    out2 = f"file://{tmp_path}/out2"
    rc, r, err = run_job(retrieve_args(pool, out2, 0, 1, "--index", "IVF16,Flat", "--nprobe", "16",
                                   "--recall-sample", "500"), capsys)
    assert rc == 0 and r["retrievalRecall"] == 1.0


def test_search_results_do_not_depend_on_batching():
    """Near-ties resolve the same whatever the batch shape (faiss uses BLAS from 20 queries up)."""
    import faiss

    from vlmops_jobs.balance.index import search

    rng = np.random.default_rng(5)
    c = rng.standard_normal((300, 48)).astype(np.float32)
    c[1] = c[0]  # exact duplicate concepts: a tie broken by concept id
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    q = (c[rng.integers(0, 300, 500)] + 0.3 * rng.standard_normal((500, 48))).astype(np.float32)
    q[:50] = c[0]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(48)
    index.add(c)
    s_all, i_all = search(index, q, 4, c)
    parts = [search(index, q[a:b], 4, c) for a, b in ((0, 7), (7, 19), (19, 333), (333, 500))]
    assert np.array_equal(np.concatenate([p[1] for p in parts]), i_all)
    assert np.concatenate([p[0] for p in parts]).tobytes() == s_all.tobytes()
    assert (i_all[:50, :2] == [0, 1]).all()
    assert (np.diff(s_all, axis=1) <= 0).all()
