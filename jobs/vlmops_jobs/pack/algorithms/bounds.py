"""Lower bounds on the number of sequences, from the length histogram (`counts[s]` items of length s).

- `volume`: ceil(tokens / capacity).
- `martello_toth`: Martello & Toth's L2: for each threshold k <= C/2, the items longer than C - k
  each need a sequence of their own, those in (C/2, C - k] too, and the items in [k, C/2] fit
  only into what those leave free or into new sequences.
- `cardinality`: a sequence holding at least j items holds j items weighing at least the j*B_j
  lightest items in total, where B_j is the number of such sequences; so B_j <= f_j = the largest
  b whose j*b lightest items average at most C/j, and the n items need
  sum_j min(B, f_j) >= n, where B = B_1 is the number of sequences. It is tight on narrow
  length ranges (fixed image tokens + a caption) where a few too many items per sequence, not
  tokens, are the limit.
All are exact integer arithmetic, O(capacity) at most; `lower_bound` is the largest.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LowerBound(NamedTuple):
    sequences: int
    method: str  # "volume" | "martello-toth" | "cardinality"


def _histogram(counts: np.ndarray, capacity: int) -> np.ndarray:
    c = np.zeros(capacity + 1, dtype=np.int64)
    c[1:] = np.asarray(counts[1 : capacity + 1], dtype=np.int64)
    return c


def volume(counts: np.ndarray, capacity: int) -> int:
    c = _histogram(counts, capacity)
    return -(-int(np.dot(c, np.arange(capacity + 1, dtype=np.int64))) // capacity)


def martello_toth(counts: np.ndarray, capacity: int) -> int:
    c = _histogram(counts, capacity)
    if not c.any():
        return 0
    n_le = np.cumsum(c)  # items of length <= x
    w_le = np.cumsum(c * np.arange(capacity + 1, dtype=np.int64))
    half = capacity // 2
    k = np.arange(half + 1)
    big = n_le[-1] - n_le[capacity - k]  # longer than C - k
    middle = n_le[capacity - k] - n_le[half]  # in (C/2, C - k]
    middle_free = middle * capacity - (w_le[capacity - k] - w_le[half])
    small = w_le[half] - np.where(k > 0, w_le[np.maximum(k - 1, 0)], 0)  # tokens in [k, C/2]
    extra = np.maximum(0, -(-(small - middle_free) // capacity))
    return int((big + middle + extra).max())


def cardinality(counts: np.ndarray, capacity: int) -> int:
    c = _histogram(counts, capacity)
    sizes = np.flatnonzero(c)
    if sizes.size == 0:
        return 0
    n_of = c[sizes]
    n = int(n_of.sum())
    n_le = np.cumsum(n_of)  # items up to and including each present length (ascending)
    w_le = np.cumsum(n_of * sizes)
    n_before, w_before = n_le - n_of, w_le - n_of * sizes
    most = int(np.searchsorted(w_le, capacity, side="right"))  # whole lightest classes that fit one sequence
    j_max = int(n_le[most - 1]) if most else 0
    if most < sizes.size:
        j_max += (capacity - (int(w_le[most - 1]) if most else 0)) // int(sizes[most])
    j = np.arange(1, j_max + 1, dtype=np.int64)
    # q_j = the most lightest items averaging <= C/j: past the first class whose running total
    # exceeds C/j per item, solve prev_w + (q - prev_n) * s <= q * C / j within that class
    first_over = _first_over(w_le, n_le, j, capacity)
    q = np.full(j.size, n, dtype=np.int64)
    inside = first_over < sizes.size
    i = first_over[inside]
    s, jj = sizes[i], j[inside]
    q[inside] = jj * (n_before[i] * s - w_before[i]) // (jj * s - capacity)
    f = q // j
    low, high = 1, n  # smallest B with sum_j min(B, f_j) >= n
    while low < high:
        mid = (low + high) // 2
        if int(np.minimum(f, mid).sum()) >= n:
            high = mid
        else:
            low = mid + 1
    return low


def _first_over(w_le: np.ndarray, n_le: np.ndarray, j: np.ndarray, capacity: int) -> np.ndarray:
    """For each j, the first class whose running average w_le/n_le exceeds C/j (len if none): a
    float search on the nondecreasing averages, made exact with integer checks."""
    idx = np.searchsorted(w_le / n_le, capacity / j, side="right")
    m = w_le.size
    for _ in range(2):  # float rounding moves it by at most one class
        at = np.minimum(idx, m - 1)
        too_far = (idx > 0) & (j * w_le[np.maximum(idx - 1, 0)] > capacity * n_le[np.maximum(idx - 1, 0)])
        short = (idx < m) & ~(j * w_le[at] > capacity * n_le[at])
        idx = idx - too_far + short
    return idx


def lower_bounds(counts: np.ndarray, capacity: int) -> dict[str, int]:
    """Every bound, by method."""
    return {"volume": volume(counts, capacity), "martello-toth": martello_toth(counts, capacity),
            "cardinality": cardinality(counts, capacity)}


def lower_bound(counts: np.ndarray, capacity: int, bounds: dict[str, int] | None = None) -> LowerBound:
    """The largest of the bounds (ties: the first, the cheapest to explain)."""
    bounds = bounds or lower_bounds(counts, capacity)
    method = max(bounds, key=lambda m: bounds[m])
    return LowerBound(bounds[method], method)
