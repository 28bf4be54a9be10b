"""Items -> sequences from a size-class plan, without a global argsort.

The slots of each length class are laid out class after class (decreasing length), built from
the plan's runs (`slots_of`); the items are processed in blocks of `BLOCK`, each block sorted by
(class, position) keys, and each item takes the next slot of its class (per-block offsets from
per-block bincounts), so equal lengths fill slots in input order. Cost: about three `np.sort`
of the lengths.
"""
from __future__ import annotations

import numpy as np

from .classes import BLOCK, LengthClasses
from .packing import Packing, Runs, bin_dtype


def assign(classes: LengthClasses, runs: Runs, n_bins: int, loads: np.ndarray, info: dict | None = None) -> Packing:
    """Item-level packing from runs: the items of one length fill that length's slots (runs in
    the given order) in input order. Linear time, no global sort."""
    runs = runs.by_length()
    if int(runs.placed.sum()) != classes.n - classes.n_dropped:
        raise ValueError("plan does not match the length counts")
    slots = slots_of(runs, classes.n, bin_dtype(n_bins))
    bin_of = np.empty(classes.n, dtype=bin_dtype(n_bins))
    _scatter(classes, slots, bin_of)
    return Packing(bin_of=bin_of, n_bins=n_bins, loads=loads, info=info)


def slots_of(runs: Runs, n: int, dtype: type) -> np.ndarray:
    """Sequence of each slot, runs after runs (`runs` grouped by decreasing length); dropped
    items' slots (-1) last. After `round_robin` a run's slots are one sequence repeated or a range
    of sequences: slot i of a range row starting at slot `start` is `first + i - start`."""
    runs = runs.round_robin()
    keep = runs.placed > 0
    first, n_bins, placed = runs.first[keep], runs.n_bins[keep], runs.placed[keep]
    n_placed = int(placed.sum())
    slots = np.empty(n, dtype=dtype)
    slots[n_placed:] = -1
    if not n_placed:
        return slots
    ranges = (n_bins > 1) | (placed == 1)  # a one-slot row is a range too
    work = dtype if n_placed < 2**31 else np.int64  # slot positions must fit
    out = slots[:n_placed] if work is dtype else np.empty(n_placed, dtype=work)
    if not ranges.any():
        out[:] = np.repeat(first.astype(work), placed)
    else:
        start = np.cumsum(placed) - placed
        out[:] = np.repeat((first - np.where(ranges, start, 0)).astype(work), placed)
        if ranges.all():
            out += np.arange(n_placed, dtype=work)
        else:
            np.add(out, np.arange(n_placed, dtype=work), out=out, where=np.repeat(ranges, placed))
    if out.base is not slots:
        slots[:n_placed] = out
    return slots


def _class_starts(classes: LengthClasses) -> np.ndarray:
    """First slot of each class: classes laid out capacity, ..., 1, then the dropped (capacity+1, 0)."""
    n_classes, capacity = classes.n_classes, classes.capacity
    rank = np.arange(n_classes)[::-1].copy()
    rank[capacity + 1], rank[0] = n_classes - 2, n_classes - 1
    rank[1 : capacity + 1] -= 1
    by_rank = np.argsort(rank)
    counts = classes.class_counts[by_rank]
    first = np.empty(n_classes, dtype=np.int64)
    first[by_rank] = np.cumsum(counts) - counts
    return first


def _scatter(classes: LengthClasses, slots: np.ndarray, bin_of: np.ndarray) -> None:
    """Each item takes the next slot of its class, block by block: the block sorted by
    (class, position) as one key (a SIMD sort of 32-bit keys for 16-bit classes, 64-bit beyond:
    faster than numpy's radix argsort), then the k-th item of the sorted block takes slot `k +
    (next slot of its class - the rank of its class's first item in the block)`."""
    next_slot = _class_starts(classes)  # the next free slot of each class, moving block by block
    within = np.arange(BLOCK, dtype=np.int64)
    if classes.small:
        key_type, shift, mask = np.uint32, np.uint32(16), np.uint32(0xFFFF)
    else:
        key_type, shift, mask = np.uint64, np.uint64(32), np.uint64(0xFFFFFFFF)
    local = np.arange(BLOCK, dtype=key_type)
    index = np.empty(BLOCK, dtype=np.intp)
    for j, start in enumerate(range(0, classes.n, BLOCK)):
        block = classes.classes[start : start + BLOCK]
        size = block.size
        key = block.astype(key_type)
        key <<= shift
        key |= local[:size]
        key.sort()
        by_class = np.bitwise_and(key, mask, out=index[:size], casting="unsafe")
        counts = classes.block_counts[j]
        present = np.flatnonzero(counts)
        present_counts = counts[present]
        # slot of each class's first item in this block minus that item's rank in the sorted block
        pos = np.repeat(next_slot[present] - (np.cumsum(present_counts) - present_counts), present_counts)
        pos += within[:size]
        by_class += start
        bin_of[by_class] = slots[pos]
        next_slot += counts
