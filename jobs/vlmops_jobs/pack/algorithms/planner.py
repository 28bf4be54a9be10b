"""The size-class plan: BFD, the lower bound, and improvement passes only where the bound says
BFD may be far from the optimum.

BFD runs first (its sequence count is the ceiling: a pass is kept only with strictly fewer
sequences). When BFD is more than `WORTH` above the best lower bound, the passes that suit the
length histogram run in turn until one is within it:
  - `countmax` (narrow ranges with many items per sequence: fixed image tokens + a caption),
  - `closing` (narrow ranges where two-item completions exist: short captions),
  - `completion` (wide mixes: video-length, long documents).
Every pass works on the histogram (cost by distinct lengths, not items).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .bfd import bfd, bin_loads
from .bounds import lower_bound, lower_bounds
from .closing import exact_fill
from .completion import completion
from .countmax import layered
from .packing import Runs, SizeClassPlan

WORTH = 0.0005  # passes run while the plan is more than 0.05% (and one sequence) above the bound
NARROW = 4  # a mix is narrow when its 99th percentile length is at most this many times its 1st
CARDINALITY_NEAR = 0.9  # cardinality bound / volume bound above which counts bind before tokens


class _Candidate(NamedTuple):
    n_bins: int
    runs: Runs
    loads: Callable[[], np.ndarray]  # computed for the plan kept only


def worth_improving(n_bins: int, bound: int) -> bool:
    excess = n_bins - bound
    return excess >= 1 and excess > WORTH * bound


def _bfd(counts: np.ndarray, capacity: int) -> _Candidate:
    plain = bfd(counts, capacity)
    return _Candidate(plain.n_bins, plain.runs, lambda: bin_loads(plain.n_bins, capacity, plain.open_bins))


def _countmax(counts: np.ndarray, capacity: int) -> _Candidate:
    n_bins, runs, loads, left = layered(counts, capacity)
    if not left.any():
        return _Candidate(n_bins, runs, lambda: loads)
    rest = bfd(left, capacity, n_bins=n_bins)
    return _Candidate(rest.n_bins, Runs.concat([runs, rest.runs]),
                      lambda: np.concatenate([loads, bin_loads(rest.n_bins, capacity, rest.open_bins)[n_bins:]]))


def _closing(counts: np.ndarray, capacity: int) -> _Candidate | None:
    closed = exact_fill(counts, capacity)
    return None if closed is None else _Candidate(closed.n_bins, closed.runs, lambda: closed.loads)


def _completion(counts: np.ndarray, capacity: int) -> _Candidate:
    n_bins, runs, loads = completion(counts, capacity)
    return _Candidate(n_bins, runs, loads)


PASSES: dict[str, Callable[[np.ndarray, int], _Candidate | None]] = {
    "countmax": _countmax, "closing": _closing, "completion": _completion}


def passes_for(counts: np.ndarray, capacity: int, bounds: dict[str, int]) -> list[str]:
    """The passes worth trying on this histogram, most likely first. Wide mixes (the 99th
    percentile length over `NARROW` times the 1st) -> `completion`; narrow ones with the item
    count close to binding (cardinality bound near the volume bound) -> `countmax` first; narrow
    ones with room for exact fills -> `closing` first."""
    cumulative = np.cumsum(counts[1 : capacity + 1])
    low, high = np.searchsorted(cumulative, [0.01 * cumulative[-1], 0.99 * cumulative[-1]]) + 1
    if high > NARROW * low:
        return ["completion"]
    if bounds["cardinality"] >= CARDINALITY_NEAR * bounds["volume"]:
        return ["countmax", "closing", "completion"]
    return ["closing", "countmax", "completion"]


def plan_size_classes(counts: np.ndarray, capacity: int, improve: bool = True) -> SizeClassPlan:
    """BFD of `counts[s]` items of each length s, then (`improve`) the passes while the bound
    says they are worth it. `info`: bfdSequences, lowerBound, lowerBoundMethod, gapToLowerBound,
    pass (the plan kept: bfd | countmax | closing | completion), passesTried."""
    counts = np.asarray(counts)
    best, name = _bfd(counts, capacity), "bfd"
    bfd_sequences = best.n_bins
    bounds = lower_bounds(counts, capacity)
    bound = lower_bound(counts, capacity, bounds)
    tried = []
    if improve and worth_improving(best.n_bins, bound.sequences):
        for candidate_name in passes_for(counts, capacity, bounds):
            tried.append(candidate_name)
            candidate = PASSES[candidate_name](counts, capacity)
            if candidate is not None and candidate.n_bins < best.n_bins:
                best, name = candidate, candidate_name
            if not worth_improving(best.n_bins, bound.sequences):
                break
    info = {"bfdSequences": bfd_sequences, "lowerBound": bound.sequences,
            "lowerBoundMethod": bound.method, "gapToLowerBound": gap(best.n_bins, bound.sequences), "pass": name,
            "passesTried": tried}
    return SizeClassPlan(best.n_bins, best.runs, best.loads(), info)


def gap(n_bins: int, bound: int) -> float:
    """Relative excess over the bound (0 at the bound), rounded to 1e-6."""
    return round(n_bins / bound - 1, 6) if bound else 0.0
