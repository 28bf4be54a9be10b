"""The packers' shared types: an item-level `Packing`, size-class `Runs` and `SizeClassPlan`."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Runs(NamedTuple):
    """A size-class plan as runs, one row per (length, run of consecutive sequences): `placed[i]`
    items of length `sizes[i]` go `per_bin[i]` to each sequence `first[i]`, `first[i] + 1`, ...,
    `first[i] + n_bins[i] - 1` (the last one takes the rest, 1..per_bin[i]).

    Rows are grouped by length in decreasing order; within a length, in the order its items
    take the slots (items of one length fill them in input order)."""

    sizes: np.ndarray
    first: np.ndarray
    n_bins: np.ndarray
    per_bin: np.ndarray
    placed: np.ndarray

    @classmethod
    def empty(cls) -> Runs:
        none = np.zeros(0, np.int64)
        return cls(none, none, none, none, none)

    @classmethod
    def of(cls, *columns) -> Runs:
        return cls(*(np.asarray(c, dtype=np.int64) for c in columns))

    @classmethod
    def concat(cls, parts: list[Runs]) -> Runs:
        """Parts in order, then regrouped by decreasing length (stable: each length keeps the
        parts' order)."""
        parts = [p for p in parts if p.sizes.size]
        if not parts:
            return cls.empty()
        runs = cls(*(np.concatenate([p[i] for p in parts]) for i in range(5)))
        return runs.by_length()

    def by_length(self) -> Runs:
        """Rows grouped by decreasing length, stable."""
        s = self.sizes
        if s.size < 2 or (s[1:] <= s[:-1]).all():
            return self
        key = (s.max() - s).astype(np.uint16) if s.max() < 65536 else -s  # 16-bit keys: radix sort
        order = np.argsort(key, kind="stable")
        return Runs(*(column[order] for column in self))

    def round_robin(self) -> Runs:
        """The same slots with every row either one sequence (`n_bins == 1`) or one item per
        sequence (`per_bin == 1`): a row of p > 1 items in each of n > 1 sequences becomes p rows
        over its sequences in turn (the last sequence's missing items drop out of the last rows),
        so the slots of a row are a constant or a range (`assign.slots_of`)."""
        expand = (self.per_bin > 1) & (self.n_bins > 1)
        if not expand.any():
            return self
        reps = np.where(expand, self.per_bin, 1)
        sizes, first, n_bins, per_bin, placed = (np.repeat(column, reps) for column in self)
        rows = np.flatnonzero(expand)
        k = reps[rows]
        at = np.repeat((np.cumsum(reps) - reps)[rows], k)  # where each expanded row's copies start
        copy = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)  # 0..per_bin-1
        at += copy
        last = np.repeat((self.placed - (self.n_bins - 1) * self.per_bin)[rows], k)  # items in the last sequence
        n_bins[at] -= copy >= last
        per_bin[at] = 1
        placed[at] = n_bins[at]
        runs = Runs(sizes, first, n_bins, per_bin, placed)
        keep = placed > 0
        return runs if keep.all() else Runs(*(column[keep] for column in runs))

    def per_length(self, capacity: int) -> np.ndarray:
        """Items placed per length (index = length)."""
        return np.bincount(self.sizes, weights=self.placed, minlength=capacity + 1).astype(np.int64)


class SizeClassPlan(NamedTuple):
    """`runs` over `n_bins` sequences with `loads[b]` tokens each; `info` says how it was made
    (see `planner.plan_size_classes`)."""

    n_bins: int
    runs: Runs
    loads: np.ndarray
    info: dict


class Packing:
    """`bin_of[i]` = sequence of item i (-1: dropped); `n_bins`; `loads[b]` tokens of b;
    `order` (computed on first use) = placed items grouped by sequence (input order inside one);
    `info`: how the plan was made (bounds, passes; empty for FFD)."""

    def __init__(self, bin_of: np.ndarray, n_bins: int, loads: np.ndarray, order: np.ndarray | None = None,
                 info: dict | None = None):
        self.bin_of = bin_of
        self.n_bins = n_bins
        self.loads = loads
        self._order = order
        self.info = info or {}

    @property
    def order(self) -> np.ndarray:
        if self._order is None:
            self._order = group_by_bin(self.bin_of)
        return self._order


def bin_dtype(n_bins: int) -> type:
    return np.int32 if n_bins < 2**31 else np.int64


def group_by_bin(bin_of: np.ndarray) -> np.ndarray:
    """Indices of placed items (bin >= 0), grouped by bin, input order inside a bin: one
    vectorised sort of 64-bit keys (bin << k | index)."""
    bin_of = np.asarray(bin_of)
    placed = bin_of >= 0
    placed_idx = None if placed.all() else np.flatnonzero(placed)
    bins = bin_of if placed_idx is None else bin_of[placed_idx]
    n_placed = bins.size
    if n_placed == 0:
        return np.zeros(0, np.int64)
    index_bits = max(1, int(n_placed - 1).bit_length())
    if index_bits + int(bins.max()).bit_length() <= 64:
        key = bins.astype(np.uint64)
        key <<= np.uint64(index_bits)
        key |= np.arange(n_placed, dtype=np.uint64)
        key.sort()
        key &= np.uint64((1 << index_bits) - 1)
        pos = key.astype(np.int64)
    else:  # pragma: no cover - beyond 2**64 bin*item combinations
        pos = np.argsort(bins, kind="stable")
    return pos if placed_idx is None else placed_idx[pos]


def descending_order(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """Indices of items with 0 < length <= capacity, by decreasing length, ties in input order."""
    lengths = np.asarray(lengths)
    fits = (lengths > 0) & (lengths <= capacity)
    fit_idx = np.flatnonzero(fits) if not fits.all() else None
    sub = lengths if fit_idx is None else lengths[fit_idx]
    if capacity < 65536:
        key = (capacity - sub).astype(np.uint16)  # radix sort (stable, O(n)) on 16-bit keys
    else:
        key = (capacity - sub).astype(np.int64)
    order = np.argsort(key, kind="stable")
    return order if fit_idx is None else fit_idx[order]
