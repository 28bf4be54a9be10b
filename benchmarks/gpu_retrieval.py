"""Concept retrieval on a GPU (faiss GPU index): the same results as CPU exact search, and its speed
against the GPU's matmul peak measured in the same run (not run by tests; `--smoke` runs a tiny version
on a CPU, the CPU index standing in for the GPU one, so the script does not rot).

On seeded clustered data (bench_retrieval.clustered), in one run:
- the bf16 matmul peak (gpu_matmul_peak.measure, needs torch), or --peak-tflops when torch is absent;
- equality on --check queries: the job's `search` (faiss proposes k + margin candidates, rescored on
  the CPU) gives the same ids and similarities with the GPU index as with the CPU one; the GPU index's
  own top-k matches the CPU's: ids identical except ties (concepts whose exact similarities differ
  by less than float32 rounding, TIE), scores within 1e-4;
- speed on --queries queries: the GPU index's search (float32 and float16 storage) in queries/s and
  TFLOP/s (2 * queries * concepts * dim per search) as a fraction of the peak; the job's whole
  `search` (GPU candidates + CPU rescoring); CPU exact search with every core, for the speed-up.
The last line is one JSON object.

    PYTHONPATH=jobs python benchmarks/gpu_retrieval.py [--queries 131072 --concepts 500000 --dim 768]
    PYTHONPATH=jobs python benchmarks/gpu_retrieval.py --smoke      # CPU, seconds
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # before bench_retrieval sets 1

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "retrieval"), str(HERE.parent / "jobs")]

SCORE_TOL = 1e-4  # largest |GPU score - CPU score| accepted
TIE = 1e-5  # two concepts whose exact similarities differ by less than this may swap places


def best(fn, repeat: int) -> float:
    """Best wall time of `repeat` calls after one warm-up (a GPU search returns host arrays, so
    it has finished when it returns)."""
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def peak_tflops(a) -> tuple[float | None, str]:
    if a.smoke:
        from bench_retrieval import blas_peak

        return blas_peak(512) / 1e3, "numpy sgemm 512^3 (smoke, CPU)"
    try:
        import torch

        if torch.cuda.is_available():
            from gpu_matmul_peak import measure

            return measure(), "torch bf16 matmul 8192^3 (gpu_matmul_peak.measure)"
    except ImportError:
        pass
    if a.peak_tflops:
        return a.peak_tflops, "--peak-tflops"
    return None, "none: no torch here and no --peak-tflops"


def compare_raw(ids_g, s_g, ids_c, s_c, q, x) -> dict:
    """The GPU index's top-k against the CPU's: a position whose ids differ is a tie swap when the
    two concepts' exact (float64) similarities to the query differ by less than TIE."""
    rows, cols = np.nonzero(ids_g != ids_c)
    qr = q[rows].astype(np.float64)
    eg = np.einsum("ij,ij->i", qr, x[ids_g[rows, cols]].astype(np.float64))
    ec = np.einsum("ij,ij->i", qr, x[ids_c[rows, cols]].astype(np.float64))
    gap = np.abs(eg - ec)
    return {"rows": len(q), "rowsIdentical": int(len(q) - len(np.unique(rows))), "tieSwaps": int((gap < TIE).sum()),
            "mismatches": int((gap >= TIE).sum()), "maxTieGap": float(gap.max()) if len(gap) else 0.0,
            "maxScoreDiff": float(np.abs(s_g - s_c).max())}


def equality(a, cpu, gpus: dict, x: np.ndarray, q: np.ndarray) -> dict:
    """Job path (must be identical) and raw index top-k (ties and 1e-4 allowed), per GPU storage."""
    from vlmops_jobs.balance.index import candidates, search

    kk = candidates(a.k, len(x))
    s_job, i_job = search(cpu, q, a.k, x)
    s_raw, i_raw = cpu.search(q, kk)
    out = {}
    for name, g in gpus.items():
        gs_job, gi_job = search(g, q, a.k, x)
        gs_raw, gi_raw = g.search(q, kk)
        raw = compare_raw(gi_raw, gs_raw, i_raw, s_raw, q, x)
        out[name] = {"jobSearchIdentical": bool(np.array_equal(gi_job, i_job) and gs_job.tobytes() == s_job.tobytes()),
                     "jobSearchRowsDiffering": int((gi_job != i_job).any(axis=1).sum()), "rawTopK": raw,
                     "pass": bool(np.array_equal(gi_job, i_job) and raw["mismatches"] == 0
                                  and raw["maxScoreDiff"] <= SCORE_TOL)}
        print(f"  {name}: job search identical={out[name]['jobSearchIdentical']} "
              f"(rows differing {out[name]['jobSearchRowsDiffering']}/{len(q)}); raw top-{kk}: "
              f"{raw['rowsIdentical']}/{len(q)} rows identical, {raw['tieSwaps']} tie swaps, "
              f"{raw['mismatches']} mismatches, max score diff {raw['maxScoreDiff']:.2e}")
    return out


def speed(a, gpus: dict, x: np.ndarray, q: np.ndarray, peak: float | None) -> dict:
    from vlmops_jobs.balance.index import candidates, search

    kk = candidates(a.k, len(x))
    flops = 2.0 * len(q) * len(x) * x.shape[1]
    out = {}
    for name, g in gpus.items():
        t = best(lambda g=g: g.search(q, kk), a.repeat)
        tf = flops / t / 1e12
        out[name] = {"seconds": round(t, 4), "queriesPerSecond": round(len(q) / t), "tflops": round(tf, 2),
                     "vsPeak": round(tf / peak, 4) if peak else None}
        print(f"  {name} index.search: {t:.3f}s  {len(q) / t:,.0f} queries/s  {tf:.1f} TFLOP/s"
              + (f"  = {tf / peak:.1%} of the matmul peak" if peak else ""))
    g = gpus["float32"]
    t = best(lambda: search(g, q, a.k, x), 1)
    out["jobSearch"] = {"seconds": round(t, 4), "queriesPerSecond": round(len(q) / t),
                        "vsIndexSearch": round(out["float32"]["seconds"] / t, 4)}
    print(f"  job search (float32 candidates + CPU rescoring): {t:.3f}s  {len(q) / t:,.0f} queries/s  "
          f"= {out['float32']['seconds'] / t:.1%} of index.search alone")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=131072)
    ap.add_argument("--check", type=int, default=8192, help="queries compared against CPU exact search")
    ap.add_argument("--concepts", type=int, default=500000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's matmul peak, when torch is absent")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; without a GPU the CPU index stands in")
    a = ap.parse_args()
    if a.smoke:
        a.queries, a.check, a.concepts, a.dim, a.repeat = 512, 256, 3000, 32, 1

    import faiss
    from bench_retrieval import clustered

    from vlmops_jobs.balance.index import gpu_unavailable, to_gpu

    why = gpu_unavailable()
    if why and not a.smoke:
        print(json.dumps({"error": f"no GPU search here: {why}", "pass": False}))
        return 2
    faiss.omp_set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    t0 = time.perf_counter()
    x, q = clustered(argparse.Namespace(queries=a.queries, concepts=a.concepts, dim=a.dim))
    x, q = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(q, np.float32)
    print(f"data: {a.queries} queries, {a.concepts} concepts, dim {a.dim}, k {a.k} "
          f"({time.perf_counter() - t0:.1f}s to make)")
    peak, peak_from = peak_tflops(a)
    print(f"matmul peak: {peak if peak is None else round(peak, 1)} TFLOP/s ({peak_from})")

    cpu = faiss.IndexFlatIP(a.dim)
    cpu.add(x)
    if why:  # smoke without a GPU: the CPU index stands in, so every step runs
        gpus, device = {"float32": cpu, "float16": cpu}, f"cpu stand-in ({why})"
    else:
        gpus, device = {"float32": to_gpu(cpu, False), "float16": to_gpu(cpu, True)}, "gpu"
        try:
            import torch

            device = torch.cuda.get_device_name()
        except ImportError:
            pass
    qc = q[:a.check]
    print(f"equality on {len(qc)} queries (device {device}):")
    eq = equality(a, cpu, gpus, x, qc)
    print(f"speed on {len(q)} queries:")
    sp = speed(a, gpus, x, q, peak)
    t_cpu = best(lambda: cpu.search(qc, a.k), 1)
    cpu_qps = len(qc) / t_cpu
    print(f"  CPU exact ({os.environ['OMP_NUM_THREADS']} threads): {cpu_qps:,.0f} queries/s; GPU float32 "
          f"{sp['float32']['queriesPerSecond'] / cpu_qps:.1f}x, float16 {sp['float16']['queriesPerSecond'] / cpu_qps:.1f}x")
    summary = {
        "device": device, "faiss": faiss.__version__, "queries": a.queries, "concepts": a.concepts, "dim": a.dim,
        "k": a.k, "peakTflops": None if peak is None else round(peak, 2), "peakFrom": peak_from,
        "equality": eq, "gpu": sp,
        "cpu": {"threads": int(os.environ["OMP_NUM_THREADS"]), "queriesPerSecond": round(cpu_qps)},
        "speedupVsCpu": {n: round(sp[n]["queriesPerSecond"] / cpu_qps, 2) for n in ("float32", "float16")},
        # float16 storage proposes candidates from rounded vectors: reported, not required to match
        "pass": eq["float32"]["pass"],
    }
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
