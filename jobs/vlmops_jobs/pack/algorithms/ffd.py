"""First-fit-decreasing: runs of equal lengths, each into the lowest-numbered bins that fit; a
block maximum over the residual array finds candidate bins without scanning them all."""
from __future__ import annotations

import numpy as np

from .packing import Packing, bin_dtype, descending_order


class _Bins:
    """Residual capacity of every bin, with the maximum residual of each block of `block` bins."""

    def __init__(self, capacity: int, n_items: int, block: int):
        self.capacity, self.block = capacity, block
        self.residual = np.zeros(((max(1, n_items) + block - 1) // block) * block, dtype=np.int64)
        self.block_max = np.zeros(self.residual.size // block, dtype=np.int64)
        self.n_bins = 0

    def _slots_of(self, blocks: np.ndarray) -> np.ndarray:
        return (blocks[:, None] * self.block + np.arange(self.block)).ravel()

    def _refresh(self, blocks: np.ndarray, slots: np.ndarray) -> None:
        self.block_max[blocks] = self.residual[slots].reshape(-1, self.block).max(axis=1)

    def fill_open(self, size: int, count: int, out: np.ndarray) -> int:
        """Put up to `count` items of `size` into open bins, first fit; their bins go to `out`.
        Returns how many were placed."""
        n_blocks = (self.n_bins + self.block - 1) // self.block
        if not n_blocks:
            return 0
        candidates = np.flatnonzero(self.block_max[:n_blocks] >= size)
        done = 0
        for chunk in range(0, candidates.size, 8):
            if done == count:
                break
            blocks = candidates[chunk : chunk + 8]
            slots = self._slots_of(blocks)
            room = self.residual[slots]
            fit = np.flatnonzero(room >= size)
            bins, fits = slots[fit], room[fit] // size
            cumulative = np.cumsum(fits)
            n_use = int(np.searchsorted(cumulative, count - done)) + 1 if cumulative[-1] >= count - done else fits.size
            bins, fits = bins[:n_use], fits[:n_use].copy()
            over = int(fits.sum()) - (count - done)
            if over > 0:
                fits[-1] -= over
            placed = int(fits.sum())
            out[done : done + placed] = np.repeat(bins, fits)
            self.residual[bins] -= fits * size
            self._refresh(blocks, slots)
            done += placed
        return done

    def open_new(self, size: int, count: int, out: np.ndarray) -> None:
        """Open new bins for `count` items of `size`, as many per bin as fit."""
        per_bin = self.capacity // size
        n_new = -(-count // per_bin)
        ids = np.arange(self.n_bins, self.n_bins + n_new, dtype=np.int64)
        out[:count] = np.repeat(ids, per_bin)[:count]
        fill = np.full(n_new, per_bin, dtype=np.int64)
        fill[-1] = count - (n_new - 1) * per_bin
        self.residual[ids] = self.capacity - fill * size
        touched = np.unique(ids // self.block)
        self._refresh(touched, self._slots_of(touched))
        self.n_bins += n_new


def _equal_runs(sorted_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, stop, size) of equal-length runs in a sorted array."""
    n = sorted_lengths.size
    if n == 0:
        none = np.zeros(0, np.int64)
        return none, none, none
    cut = np.flatnonzero(sorted_lengths[1:] != sorted_lengths[:-1]) + 1
    starts = np.concatenate(([0], cut))
    stops = np.concatenate((cut, [n]))
    return starts, stops, sorted_lengths[starts].astype(np.int64)


def first_fit_decreasing(lengths: np.ndarray, capacity: int, block: int = 1024) -> Packing:
    lengths = np.asarray(lengths, dtype=np.int64)
    order = descending_order(lengths, capacity)
    starts, stops, sizes = _equal_runs(lengths[order])
    item_bin = np.empty(order.size, dtype=np.int64)  # in `order`
    bins = _Bins(capacity, order.size, block)
    for start, stop, size in zip(starts.tolist(), stops.tolist(), sizes.tolist()):
        placed = bins.fill_open(size, stop - start, item_bin[start:stop])
        if start + placed < stop:
            bins.open_new(size, stop - start - placed, item_bin[start + placed : stop])
    bin_of = np.full(lengths.size, -1, dtype=bin_dtype(bins.n_bins))
    bin_of[order] = item_bin
    loads = (np.bincount(item_bin, weights=lengths[order], minlength=bins.n_bins).astype(np.int64) if bins.n_bins
             else np.zeros(0, np.int64))
    return Packing(bin_of=bin_of, n_bins=bins.n_bins, loads=loads)
