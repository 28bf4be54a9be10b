"""Concept-retrieval benchmark (one core): exact top-k vs the machine's BLAS peak, end-to-end
shard throughput vs search alone, and the IVF recall/speed trade-off.

    OMP_NUM_THREADS=1 python benchmarks/retrieval/bench_retrieval.py [--queries 8192] [--concepts 50000] [--dim 512]

The CPU benchmark (the CLI runs with --device cpu); benchmarks/gpu_retrieval.sh is the GPU one.
Targets (product.md / issue 3): exact retrieval >= 70% of one-core BLAS peak; end-to-end shard
(read + search + write, `python -m vlmops_jobs.balance retrieve`) >= 60% of the search alone.
The last line is one JSON object with every ratio.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))


CLOCK = time.process_time  # CPU seconds: on a shared machine wall time measures the neighbours


def best(fn, repeat: int = 3) -> float:
    ts = []
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return min(ts)


def blas_peak(n: int = 2048) -> float:
    """GFLOP/s of a large float32 numpy matmul (sgemm) on this process's threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up
    return 2.0 * n ** 3 / best(lambda: a @ b) / 1e9


def unit(rng, n, d):
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered(a) -> tuple[np.ndarray, np.ndarray]:
    """Clustered concepts and queries near them (retrieval is meaningful, IVF recall is realistic)."""
    rng = np.random.default_rng(1)
    nq, nc, d = a.queries, a.concepts, a.dim
    centers = unit(rng, 512, d)
    concepts = centers[rng.integers(0, 512, nc)] + 2.0 * unit(rng, nc, d)
    concepts /= np.linalg.norm(concepts, axis=1, keepdims=True)
    queries = centers[rng.integers(0, 512, nq)] + 2.0 * unit(rng, nq, d)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    queries = queries.astype(np.float16).astype(np.float32)  # what the float16 source holds
    return concepts, queries


def exact_search(a, concepts: np.ndarray, queries: np.ndarray, flops: float, peak: float):
    """(faiss Flat time, its GFLOP/s, numpy baseline GFLOP/s, exact top-k ids)."""
    import faiss

    nq, k = a.queries, a.k
    flat = faiss.IndexFlatIP(a.dim)
    flat.add(concepts)
    flat.search(queries[:256], k)
    t_flat = best(lambda: flat.search(queries, k), a.repeat)
    _, exact = flat.search(queries, k)
    g_flat = flops / t_flat / 1e9

    def np_topk():
        for s in range(0, nq, 1024):
            sims = queries[s:s + 1024] @ concepts.T
            np.argpartition(-sims, k, axis=1)[:, :k]

    t_np = best(np_topk, 1)
    g_np = flops / t_np / 1e9
    print(f"exact faiss IndexFlatIP: {t_flat:.3f}s  {nq / t_flat:.0f} queries/s  {g_flat:.1f} GFLOP/s  "
          f"= {g_flat / peak:.1%} of BLAS peak")
    print(f"numpy matmul + argpartition: {t_np:.3f}s  {g_np:.1f} GFLOP/s  = {g_np / peak:.1%} of BLAS peak")
    return t_flat, g_flat, g_np, exact


def end_to_end(a, concepts: np.ndarray, queries: np.ndarray, t_flat: float) -> float:
    """The CLI's retrieve step on a float16 parquet source (read + search + write): its time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlmops_contract.result import parse_result
    from vlmops_jobs.balance import JOB

    nq, k = a.queries, a.k

    def emb(m, t):
        n_, d_ = m.shape
        return pa.ListArray.from_arrays(pa.array(np.arange(0, n_ * d_ + 1, d_, dtype=np.int32)),
                                        pa.array(m.reshape(-1).astype(np.float16 if t == pa.float16() else np.float32), t))

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src.parquet")
        con = os.path.join(tmp, "concepts.parquet")
        pq.write_table(pa.table({"id": [f"s{i}" for i in range(nq)], "embedding": emb(queries, pa.float16())}), src)
        pq.write_table(pa.table({"text": [f"c{i}" for i in range(a.concepts)], "embedding": emb(concepts, pa.float16())}), con)
        e2e = []
        for r in range(a.repeat):
            out = os.path.join(tmp, f"out{r}")
            buf_out, buf_err = io.StringIO(), io.StringIO()
            t0 = CLOCK()
            with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
                rc = JOB.run(["retrieve", "--source", src, "--concepts", con, "--top-k", str(k),
                              "--shard", "0", "--shards", "1", "--output", out, "--device", "cpu"])
            e2e.append(CLOCK() - t0)
            assert rc == 0, buf_err.getvalue()
        res = parse_result(buf_out.getvalue())
        t_e2e = min(e2e)
        print(f"end-to-end retrieve shard (CLI, in-process): {t_e2e:.3f}s  {nq / t_e2e:.0f} items/s  "
              f"{res['bytesPerSecond']} bytes/s  = {t_flat / t_e2e:.1%} of search-alone throughput")
        print("  job log: " + " | ".join(x for x in buf_err.getvalue().strip().splitlines()))
    return t_e2e


def ivf_tradeoff(a, concepts: np.ndarray, queries: np.ndarray, exact: np.ndarray, t_flat: float) -> list[dict]:
    """IVF recall / speed per nprobe."""
    import faiss

    nq, k = a.queries, a.k
    ivf = faiss.index_factory(a.dim, f"IVF{a.nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    t0 = CLOCK()
    ivf.train(concepts)
    ivf.add(concepts)
    print(f"IVF{a.nlist},Flat: trained+added in {CLOCK() - t0:.2f}s")
    rows = []
    for nprobe in (1, 2, 4, 8, 16, 32):
        if nprobe > a.nlist:
            continue
        ivf.nprobe = nprobe
        t = best(lambda: ivf.search(queries, k), 1)
        _, got = ivf.search(queries, k)
        recall = float(np.mean([len(np.intersect1d(got[i], exact[i])) / k for i in range(nq)]))
        rows.append({"nprobe": nprobe, "recall": round(recall, 4), "speedup": round(t_flat / t, 2),
                     "queriesPerSecond": round(nq / t)})
        print(f"  nprobe={nprobe:3d}  recall@{k}={recall:.4f}  {nq / t:9.0f} queries/s  {t_flat / t:6.2f}x exact")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=8192)
    ap.add_argument("--concepts", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--nlist", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()

    import faiss

    threads = int(os.environ["OMP_NUM_THREADS"])
    faiss.omp_set_num_threads(threads)
    concepts, queries = clustered(a)
    flops = 2.0 * a.queries * a.concepts * a.dim
    peak = blas_peak()
    print("times are CPU seconds of this process (time.process_time), best of --repeat")
    print(f"threads={threads}  queries={a.queries} concepts={a.concepts} dim={a.dim} k={a.k}  "
          f"({flops / 1e9:.0f} GFLOP per search)")
    print(f"BLAS peak (numpy sgemm 2048^3): {peak:.1f} GFLOP/s")
    t_flat, g_flat, g_np, exact = exact_search(a, concepts, queries, flops, peak)
    t_e2e = end_to_end(a, concepts, queries, t_flat)
    rows = ivf_tradeoff(a, concepts, queries, exact, t_flat)

    summary = {
        "threads": threads, "blasPeakGflops": round(peak, 2), "exactGflops": round(g_flat, 2),
        "exactVsBlasPeak": round(g_flat / peak, 4), "clock": "process_time", "numpyArgpartitionVsBlasPeak": round(g_np / peak, 4),
        "endToEndVsSearch": round(t_flat / t_e2e, 4), "ivf": rows,
        "targets": {"exactVsBlasPeak": 0.70, "endToEndVsSearch": 0.60},
        "pass": bool(g_flat / peak >= 0.70 and t_flat / t_e2e >= 0.60),
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
