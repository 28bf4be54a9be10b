"""Plans made of repeated patterns: a pattern (how many items of each length) used `mult` times,
on consecutive sequences. The pattern packers (`countmax`, `completion`) build one pattern from
the histogram, use it as often as the counts allow (at least one length runs out, so there are at
most as many patterns as lengths), and repeat: their cost depends on the distinct lengths only."""
from __future__ import annotations

import numpy as np

from .packing import Runs


class PatternPlan:
    """Patterns in order; pattern p takes sequences [start_p, start_p + mult_p)."""

    def __init__(self) -> None:
        self._rows: list[int] = []  # size, pattern, per_bin (flat)
        self._mult: list[int] = []
        self._loads: list[int] = []

    def add(self, pattern: dict[int, int], mult: int) -> None:
        p = len(self._mult)
        load = 0
        for size, per_bin in pattern.items():
            self._rows += (size, p, per_bin)
            load += size * per_bin
        self._mult.append(mult)
        self._loads.append(load)

    @property
    def n_bins(self) -> int:
        return sum(self._mult)

    def runs(self, first_bin: int = 0) -> Runs:
        rows = np.array(self._rows, dtype=np.int64).reshape(-1, 3)
        mult = np.array(self._mult, dtype=np.int64)
        start = np.cumsum(mult) - mult + first_bin
        sizes, pattern, per_bin = rows.T
        return Runs(sizes, start[pattern], mult[pattern], per_bin, per_bin * mult[pattern]).by_length()

    def loads(self) -> np.ndarray:
        return np.repeat(np.array(self._loads, dtype=np.int64), np.array(self._mult, dtype=np.int64))


def use(counts: list[int], sizes: list[int], pattern: dict[int, int], index: dict[int, int]) -> int:
    """Use `pattern` as often as `counts` (parallel to `sizes`) allow; returns how often."""
    mult = min(counts[index[s]] // t for s, t in pattern.items())
    for s, t in pattern.items():
        counts[index[s]] -= mult * t
    return mult
