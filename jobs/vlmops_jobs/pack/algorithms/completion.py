"""Exact completion, one sequence pattern at a time: for wide length mixes (video-length, long
documents) where BFD leaves each sequence a residual smaller than anything left to place.

A pattern starts with the longest item left; its residual r is completed exactly by one item of
length r, else by a pair a + (r - a) (the largest such a), else by the longest item that fits,
and again. Bitmasks of the lengths present (and of C - length, so the pair sums are one shift
and an AND) find each candidate without scanning. The pattern is then used as often as the counts
allow (`patterns.use`), so the cost depends on the distinct lengths, not on the items.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .packing import Runs
from .patterns import PatternPlan


def completion(counts: np.ndarray, capacity: int) -> tuple[int, Runs, Callable[[], np.ndarray]]:
    """(sequences, runs, loads on demand) of the exact-completion packing of `counts[s]` items of length s."""
    counts = np.asarray(counts, dtype=np.int64)
    sizes = np.flatnonzero(counts[1 : capacity + 1]) + 1
    left = [0] * (capacity + 1)
    present = 0  # bit s: some item of length s is left
    mirrored = 0  # bit capacity - s: the same
    for s, c in zip(sizes.tolist(), counts[sizes].tolist()):
        left[s] = c
        present |= 1 << s
        mirrored |= 1 << (capacity - s)
    plan = PatternPlan()
    while present:
        first = present.bit_length() - 1
        pattern = {first: 1}
        left[first] -= 1
        r = capacity - first
        double = 2 * first
        while r > 0:
            if r > double and left[first] > 0:  # nothing completes r yet: more of the longest at once
                t = min((r - double + first - 1) // first, left[first])
                pattern[first] += t
                left[first] -= t
                r -= t * first
                continue
            if left[r] > 0:  # one item of exactly r
                pattern[r] = pattern.get(r, 0) + 1
                left[r] -= 1
                break
            # a + (r - a): none when r is over twice the longest item left
            pairs = present & (mirrored >> (capacity - r)) & ((1 << (r // 2 + 1)) - 1) if r <= double else 0
            while pairs:
                a = pairs.bit_length() - 1
                b = r - a
                if left[a] > 0 and left[b] > (a == b):
                    pattern[a] = pattern.get(a, 0) + 1
                    pattern[b] = pattern.get(b, 0) + 1
                    left[a] -= 1
                    left[b] -= 1
                    r = 0
                    break
                pairs ^= 1 << a
            if r == 0:
                break
            if r >= first and left[first] > 0:  # else the longest item that fits
                x = first
            else:
                fits = present & ((1 << (r + 1)) - 1)
                while fits:
                    x = fits.bit_length() - 1
                    if left[x] > 0:
                        break
                    fits ^= 1 << x
                if not fits:
                    break
            pattern[x] = pattern.get(x, 0) + 1
            left[x] -= 1
            r -= x
        for s, t in pattern.items():  # the pattern once more, then as often as the counts allow
            left[s] += t
        mult = min(left[s] // t for s, t in pattern.items())
        for s, t in pattern.items():
            left[s] -= mult * t
            if not left[s]:
                present ^= 1 << s
                mirrored ^= 1 << (capacity - s)
        plan.add(pattern, mult)
    return plan.n_bins, plan.runs(), plan.loads
