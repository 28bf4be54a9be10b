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
TRL's BFD is the loop of `trl.data_utils._pack_bfd` (what `pack_dataset(strategy="bfd")` maps over
the data) on all samples at once (global BFD, its best sequence count): TRL's own `_SegmentTree`
(imported from trl), the (length, id) pairs sorted by length descending with pyarrow as TRL sorts
them, and the loop body as TRL writes it, iterating numpy scalars (`trl_bfd` below). Calling
`_pack_bfd` itself is not practical here: around the loop it moves the token columns with arrow
(`list_slice`, `take`), about 16 bytes per token even for null-valued lists, i.e. ~60 GB for the
video mix at 1M samples (it was killed for memory on this 23 GB machine); on the mixes where it
fits it takes ~30 s at 1M, slower than the loop alone, so the ratio below is a lower bound.
Only samples <= capacity go to TRL (it would truncate the rest; our plan drops them). Its
sequence count is checked against our plain BFD.
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


def trl_bfd(lengths: np.ndarray, seq_length: int) -> int:
    """The BFD loop of trl.data_utils._pack_bfd (TRL 1.16.0) on these lengths; its sequence count."""
    from collections import defaultdict, deque

    import pyarrow as pa
    import pyarrow.compute as pc
    from trl.data_utils import _SegmentTree

    lengths = pc.make_struct(pa.array(lengths), pa.array(np.arange(len(lengths))))
    lengths = lengths.sort("descending", by=0)
    # from here on, as in _pack_bfd
    segment_tree = _SegmentTree(seq_length)
    segment_tree.add(seq_length)  # the max, `seq_length` bin is always available
    space_to_bin = defaultdict(deque)
    bins: list[dict] = []
    for length, idx in zip(lengths.field(0).to_numpy(), lengths.field(1).to_numpy(), strict=True):
        space = segment_tree.search(length)
        if space < seq_length:
            bin = space_to_bin[space].popleft()
        else:
            bin = {"ids": [], "length": 0}
            bins.append(bin)
        bin["ids"].append(idx)
        bin["length"] += length
        if space < seq_length and not space_to_bin[space]:
            segment_tree.remove(space)
        space = space - length
        space_to_bin[space].append(bin)
        if space > 0:
            segment_tree.add(space)
    return len(bins)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def measure(lengths: np.ndarray, capacity: int, repeat: int, trl_repeat: int, trl: bool) -> dict:
    best = {"sort": float("inf"), "plan": float("inf"), "trl": float("inf")}
    fitting = lengths[(lengths > 0) & (lengths <= capacity)]
    packing, trl_sequences = None, None
    for i in range(max(repeat, trl_repeat if trl else 0)):
        if i < repeat:
            best["sort"] = min(best["sort"], timed(np.sort, lengths)[0])
            dt, packing = timed(pack, lengths, capacity)
            best["plan"] = min(best["plan"], dt)
        if trl and i < trl_repeat:
            dt, trl_sequences = timed(trl_bfd, fitting, capacity)
            best["trl"] = min(best["trl"], dt)
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
        import trl
        from trl.data_utils import _SegmentTree  # noqa: F401  (what trl_bfd runs)
        trl_version = trl.__version__
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
                m = measure(lengths, cap, a.repeat, a.trl_repeat, trl is not None and n <= a.trl_up_to)
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
