"""The packers' shared types: an item-level `Packing` and size-class `Incidences`."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Incidences(NamedTuple):
    """A size-class plan, one row per (length, sequence): `counts[i]` items of length `sizes[i]`
    go into sequence `bins[i]`."""

    sizes: np.ndarray
    bins: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls) -> Incidences:
        none = np.zeros(0, np.int64)
        return cls(none, none, none)


class Packing:
    """`bin_of[i]` = sequence of item i (-1: dropped); `n_bins`; `loads[b]` tokens of b;
    `order` (computed on first use) = placed items grouped by sequence (input order inside one)."""

    def __init__(self, bin_of: np.ndarray, n_bins: int, loads: np.ndarray, order: np.ndarray | None = None):
        self.bin_of = bin_of
        self.n_bins = n_bins
        self.loads = loads
        self._order = order

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
