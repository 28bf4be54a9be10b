"""Packing benchmark over the mix family (`mixes.py`): the plan's gap to the best lower bound, and
its time against TRL's own BFD and against `np.sort` of the same lengths. Prints ratios, not seconds.

    PYTHONPATH=jobs python benchmarks/packing/bench.py                      # every mix, 1M and 10M, 8192 and 16384
    PYTHONPATH=jobs python benchmarks/packing/bench.py --mixes video --sizes 100000 --trl-up-to 100000

Columns (one row per mix x samples x capacity):
  sequences   the plan's sequence count (`vlmops_jobs.pack.algorithms.pack`: BFD, then the improvement
              passes where the bound says they are worth it)
  bound       the best lower bound (`algorithms.bounds`: volume | Martello-Toth L2 | cardinality)
  gap %       sequences / bound - 1                                       target <= 0.1
  vs BFD      sequences - plain BFD's sequences                           target <= 0
  pass        the plan kept (bfd | countmax | closing | completion)
  TRL/ours    time(TRL's BFD) / time(our full plan)                       target >= 100 (at 1M)
  plan/sort   time(our full plan: counts, BFD, bound, passes and the per-sample sequence of every
              sample) / time(np.sort of the same int64 lengths)           target < 5 (at 10M)
TRL's BFD is `trl.data_utils._pack_bfd` (what `pack_dataset(strategy="bfd")` maps over the data),
called once on all samples (global BFD, its best sequence count) with a table of one list column
whose list lengths are the samples' token counts and whose values are nulls (no token buffers: its
arrow steps cost less than with real tokens, so the ratio is a lower bound). It iterates the
lengths as numpy scalars, as TRL does. Only samples <= capacity go to TRL (it would truncate the
rest; our plan drops them). Its sequence count is checked against our plain BFD.
Times are the minimum of `--repeat` runs (TRL: `--trl-repeat`), each np.sort / TRL run
interleaved with ours (the machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mixes import MIXES, make_mix  # noqa: E402

from vlmops_jobs.pack.algorithms import pack  # noqa: E402


def trl_table(lengths: np.ndarray):
    """One large_list<null> column with these list lengths (no value buffers)."""
    import pyarrow as pa

    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    column = pa.LargeListArray.from_arrays(pa.array(offsets), pa.nulls(int(offsets[-1])))
    return pa.table({"input_ids": column})


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def measure(lengths: np.ndarray, capacity: int, repeat: int, trl_repeat: int, trl) -> dict:
    best = {"sort": float("inf"), "plan": float("inf"), "trl": float("inf")}
    table = trl_table(lengths[(lengths > 0) & (lengths <= capacity)]) if trl and trl_repeat else None
    packing, trl_sequences = None, None
    for i in range(max(repeat, trl_repeat)):
        if i < repeat:
            best["sort"] = min(best["sort"], timed(np.sort, lengths)[0])
            dt, packing = timed(pack, lengths, capacity)
            best["plan"] = min(best["plan"], dt)
        if table is not None and i < trl_repeat:
            dt, out = timed(trl, table, capacity)
            best["trl"] = min(best["trl"], dt)
            trl_sequences = out.num_rows
    return {"packing": packing, "times": best, "trl_sequences": trl_sequences}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixes", nargs="+", default=list(MIXES), choices=MIXES)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--capacities", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--repeat", type=int, default=5, help="runs of the plan and of np.sort (the minimum is kept)")
    ap.add_argument("--trl-repeat", type=int, default=2, help="runs of TRL's BFD (the minimum is kept)")
    ap.add_argument("--trl-up-to", type=int, default=1_000_000, help="run TRL only up to this many samples")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        from trl.data_utils import _pack_bfd as trl
        import trl as trl_package
        trl_version = trl_package.__version__
    except ImportError:
        trl, trl_version = None, "not installed"
    print(f"# numpy {np.__version__}, TRL {trl_version}, {os.cpu_count()} CPUs; ratios are min-of-runs times")
    head = (f"{'mix':9} {'samples':>9} {'cap':>6} | {'sequences':>9} {'bound':>9} {'method':>13} {'gap %':>7} "
            f"{'vs BFD':>7} {'pass':>10} | {'TRL/ours':>8} {'plan/sort':>9}")
    print(head)
    print("-" * len(head))
    for n in a.sizes:
        for mix in a.mixes:
            lengths = make_mix(mix, n, seed=a.seed)
            for cap in a.capacities:
                run_trl = trl if n <= a.trl_up_to else None
                m = measure(lengths, cap, a.repeat, a.trl_repeat if run_trl else 0, run_trl)
                p, t, info = m["packing"], m["times"], m["packing"].info
                if m["trl_sequences"] is not None and m["trl_sequences"] != info["bfdSequences"]:
                    print(f"# {mix} {n} {cap}: TRL made {m['trl_sequences']} sequences, our BFD "
                          f"{info['bfdSequences']}", file=sys.stderr)
                trl_ratio = f"{t['trl'] / t['plan']:8.0f}" if m["trl_sequences"] is not None else f"{'-':>8}"
                print(f"{mix:9} {n:>9} {cap:>6} | {p.n_bins:>9} {info['lowerBound']:>9} {info['lowerBoundMethod']:>13} "
                      f"{100 * info['gapToLowerBound']:>7.3f} {p.n_bins - info['bfdSequences']:>+7d} {info['pass']:>10} | "
                      f"{trl_ratio} {t['plan'] / t['sort']:9.2f}", flush=True)


if __name__ == "__main__":
    main()
