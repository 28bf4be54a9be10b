"""The sampling rules: a sample's keep probability as a function of the threshold t.

MetaCLIP keeps a sample with 1 - prod_c(1 - min(1, t/count(c))) over its concepts (each concept
drawn with min(1, t/count(c)), kept when any is drawn); InverseFrequency keeps it with
min(1, t * mean_c 1/count(c)). `count(c)`: samples whose top-k holds c.
"""
from __future__ import annotations

import numpy as np

METHODS = ("MetaCLIP", "InverseFrequency")


class Rule:
    """Keep probability per sample as a function of t, for a fixed (n, k) concept matrix."""

    def __init__(self, method: str, conc: np.ndarray, counts: np.ndarray):
        self.method = method
        inv = np.zeros(len(counts) + 1, np.float64)
        nz = counts > 0
        inv[:-1][nz] = 1.0 / counts[nz]
        self.g = inv[conc]  # (n, k): 1/count(c) per slot, 0 for padding (conc == -1)
        self.nconc = (conc >= 0).sum(axis=1)
        self.max_count = float(counts.max()) if len(counts) else 0.0
        if method == "InverseFrequency":
            self.w = self.g.sum(axis=1) / np.maximum(self.nconc, 1)

    def prob(self, t: float) -> np.ndarray:
        if self.method == "MetaCLIP":
            # p(c) = min(1, t / count(c)); keep iff any concept is drawn: 1 - prod(1 - p(c))
            p = np.minimum(1.0, t * self.g)
            return 1.0 - np.prod(1.0 - p, axis=1)
        # InverseFrequency: min(1, t * mean over the sample's concepts of 1/count(c))
        return np.minimum(1.0, t * self.w)

    def expected(self, t: float) -> float:
        return float(self.prob(t).sum())

    def solve(self, target: int) -> float:
        """Smallest-error t for an expected kept count of `target` (bisection; E(t) is monotone)."""
        lo, hi = 0.0, max(self.max_count, 1.0)
        if self.expected(hi) <= target:
            return hi
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if self.expected(mid) < target:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-9 * hi:
                break
        return hi
