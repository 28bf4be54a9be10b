"""Count-maximising patterns, in layers: for narrow length ranges (a fixed image-token count plus a
short caption) where the number of items a sequence can hold, not its tokens, is the limit.

A pattern takes as many items as one sequence can hold (K: the K lightest items fit) and, among
those, the largest items it can: start from the K lightest and replace them from the top with the
largest item the slack still allows (`_pattern`). Layers (`layered`): sequences of j items need
items averaging <= C/j, and only the lightest q_j items do (the cardinality lower bound's f_j);
from j = the most items a sequence can hold down, the lightest q_j items form as many j-item
sequences as they can before the next j, until the lightest items average low enough for all the
rest (then patterns of as many items as possible, anything left by BFD).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate

import numpy as np

from .packing import Runs
from .patterns import PatternPlan, use


class _Prefix:
    """The lightest items of a histogram (ascending `sizes`, `counts`): sum and value by rank."""

    def __init__(self, sizes: list[int], counts: list[int]):
        self.sizes = sizes
        self.n_le = list(accumulate(counts))
        self.w_le = list(accumulate(s * c for s, c in zip(sizes, counts)))

    def total(self, q: int) -> int:
        """Sum of the q lightest items (q <= number of items)."""
        if q <= 0:
            return 0
        i = bisect_left(self.n_le, q)
        before_n = self.n_le[i - 1] if i else 0
        before_w = self.w_le[i - 1] if i else 0
        return before_w + (q - before_n) * self.sizes[i]

    def item(self, q: int) -> int:
        """The q-th lightest item (1-based)."""
        return self.sizes[bisect_left(self.n_le, q)]

    def most(self, capacity: int) -> int:
        """The most items one sequence can hold (the most lightest items summing to <= capacity)."""
        i = bisect_right(self.w_le, capacity)
        n = self.n_le[i - 1] if i else 0
        if i < len(self.sizes):
            n += (capacity - (self.w_le[i - 1] if i else 0)) // self.sizes[i]
        return n

    def taken(self, q: int) -> dict[int, int]:
        """The q lightest items as length -> count."""
        out: dict[int, int] = {}
        i = 0
        while q > 0:
            c = self.n_le[i] - (self.n_le[i - 1] if i else 0)
            out[self.sizes[i]] = min(c, q)
            q -= c
            i += 1
        return out


def _pattern(sizes: list[int], counts: list[int], capacity: int, k: int | None) -> dict[int, int] | None:
    """K items (K = the most that fit, or exactly `k`), lexicographically largest: the K lightest,
    then from the top of them down each replaced by the largest item the slack allows."""
    prefix = _Prefix(sizes, counts)
    most = prefix.most(capacity)
    if k is not None:
        if most < k:
            return None
        most = k
    if most == 0:
        return None
    slack = capacity - prefix.total(most)
    picks: dict[int, int] = {}
    pos, top = most, len(sizes) - 1  # pos: the prefix's top rank still to replace
    while pos > 0:
        bottom = prefix.item(pos)
        i = min(top, bisect_right(sizes, bottom + slack) - 1)
        while i >= 0 and counts[i] - picks.get(sizes[i], 0) <= 0:
            i -= 1
        if i < 0 or sizes[i] <= bottom:  # nothing larger fits: the rest stays the lightest
            break
        x = sizes[i]
        available = counts[i] - picks.get(x, 0)
        # t copies replace ranks pos, pos-1, ..., pos-t+1 at cost t*x - (their sum): the largest t
        t_low, t_high = 1, min(available, pos)
        base = prefix.total(pos)
        while t_low < t_high:
            t = (t_low + t_high + 1) // 2
            if t * x - (base - prefix.total(pos - t)) <= slack:
                t_low = t
            else:
                t_high = t - 1
        slack -= t_low * x - (base - prefix.total(pos - t_low))
        picks[x] = picks.get(x, 0) + t_low
        pos -= t_low
        top = i
    for size, c in prefix.taken(pos).items():
        picks[size] = picks.get(size, 0) + c
    return picks


def countmax(counts: np.ndarray, capacity: int, plan: PatternPlan, k: int | None = None) -> np.ndarray:
    """Patterns of as many items as fit (exactly `k` if given) until none can be made; returns
    the counts left."""
    counts = np.asarray(counts, dtype=np.int64)
    sizes = np.flatnonzero(counts[1 : capacity + 1]) + 1
    size_list, left = sizes.tolist(), counts[sizes].tolist()
    index = {s: i for i, s in enumerate(size_list)}
    while True:
        alive = [i for i, c in enumerate(left) if c]
        if not alive:
            break
        pattern = _pattern([size_list[i] for i in alive], [left[i] for i in alive], capacity, k)
        if pattern is None:
            break
        plan.add(pattern, use(left, size_list, pattern, index))
    rest = np.zeros_like(counts)
    rest[sizes] = left
    return rest


def lightest(counts: np.ndarray, q: int) -> np.ndarray:
    """The histogram of the q lightest items."""
    cumulative = np.cumsum(counts)
    out = np.minimum(counts, np.maximum(q - (cumulative - counts), 0))
    return out


def lightest_averaging(counts: np.ndarray, capacity: int, j: int) -> int:
    """The most lightest items whose average is <= capacity / j."""
    sizes = np.flatnonzero(counts)
    n_of = counts[sizes]
    n_le, w_le = np.cumsum(n_of), np.cumsum(n_of * sizes)
    over = np.flatnonzero(j * w_le > capacity * n_le)
    if over.size == 0:
        return int(n_le[-1])
    i = int(over[0])
    s, n_before, w_before = int(sizes[i]), int(n_le[i] - n_of[i]), int(w_le[i] - n_of[i] * sizes[i])
    return j * (n_before * s - w_before) // (j * s - capacity)


def layered(counts: np.ndarray, capacity: int) -> tuple[int, Runs, np.ndarray, np.ndarray]:
    """(sequences, runs, loads, counts left) of the layered count-max packing (module docstring);
    the counts left are for BFD, numbered after these sequences."""
    counts = np.asarray(counts, dtype=np.int64).copy()
    counts[0] = 0
    counts = counts[: capacity + 1]
    plan = PatternPlan()
    sizes = np.flatnonzero(counts)
    if sizes.size:
        j = _Prefix(sizes.tolist(), counts[sizes].tolist()).most(capacity)
        while j >= 1 and counts.any():
            q = lightest_averaging(counts, capacity, j)
            if q >= int(counts.sum()):
                counts = countmax(counts, capacity, plan)
                break
            if q >= j:
                sub = lightest(counts, q)
                counts -= sub - countmax(sub, capacity, plan, k=j)
            j -= 1
    return plan.n_bins, plan.runs(), plan.loads(), counts
