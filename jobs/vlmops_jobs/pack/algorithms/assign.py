"""Items -> sequences from a size-class plan, without a global argsort.

The slots of each length class are laid out class after class; the items are processed in blocks
of `BLOCK`, each block ordered by class with a stable radix argsort of 16-bit classes (a 64-bit
key sort beyond 65534 tokens), and each item takes the next slot of its class (per-block offsets
from per-block bincounts), so equal lengths fill slots in input order. Cost: about two `np.sort`
of the lengths.
"""
from __future__ import annotations

import numpy as np

from .classes import BLOCK, LengthClasses
from .packing import Incidences, Packing, bin_dtype


def assign(lengths: np.ndarray | LengthClasses, capacity: int, incidences: Incidences, n_bins: int,
           loads: np.ndarray | None = None) -> Packing:
    """Item-level packing from incidences: the items of one length fill that length's slots
    (incidences in the given order) in input order. Linear time, no global sort.

    `lengths` may be their `LengthClasses` (computed once per plan)."""
    classes = lengths if isinstance(lengths, LengthClasses) else LengthClasses(lengths, capacity)
    sizes, bins, counts = (np.asarray(x, dtype=np.int64) for x in incidences)
    if int(counts.sum()) != classes.n - classes.n_dropped:
        raise ValueError("plan does not match the length counts")
    slots = _slots(sizes, bins, counts, classes.n, capacity, bin_dtype(n_bins))
    if loads is None:
        loads = (np.bincount(bins, weights=counts * sizes, minlength=n_bins).astype(np.int64) if n_bins
                 else np.zeros(0, np.int64))
    bin_of = np.empty(classes.n, dtype=bin_dtype(n_bins))
    _scatter(classes, slots, _block_bases(classes), bin_of)
    return Packing(bin_of=bin_of, n_bins=n_bins, loads=loads)


def _slots(sizes: np.ndarray, bins: np.ndarray, counts: np.ndarray, n: int, capacity: int, dtype: type) -> np.ndarray:
    """Sequence of each slot, class after class in decreasing length; dropped items' slots (-1) last."""
    n_placed = int(counts.sum())
    slots = np.empty(n, dtype=dtype)
    if sizes.size > 1 and not (sizes[1:] <= sizes[:-1]).all():
        order = np.argsort((capacity - sizes).astype(np.uint16 if capacity < 65536 else np.int64), kind="stable")
        slots[:n_placed] = np.repeat(bins[order], counts[order])
    else:
        slots[:n_placed] = np.repeat(bins, counts)
    slots[n_placed:] = -1
    return slots


def _block_bases(classes: LengthClasses) -> np.ndarray:
    """bases[j, s] = first slot of class s for the items of block j."""
    n_classes, capacity = classes.n_classes, classes.capacity
    class_counts = classes.class_counts.copy()
    rank = np.arange(n_classes)[::-1].copy()  # layout position of each class: capacity, ..., 1, then capacity+1, 0
    rank[capacity + 1], rank[0] = n_classes - 2, n_classes - 1
    rank[1 : capacity + 1] -= 1
    first = np.zeros(n_classes, dtype=np.int64)
    by_rank = np.argsort(rank)
    first[by_rank] = np.cumsum(class_counts[by_rank]) - class_counts[by_rank]
    block_counts = classes.block_counts
    bases = np.cumsum(block_counts, axis=0, dtype=np.int64)
    bases -= block_counts
    bases += first
    return bases


def _scatter(classes: LengthClasses, slots: np.ndarray, bases: np.ndarray, bin_of: np.ndarray) -> None:
    """Each item takes the next slot of its class, block by block."""
    within = np.arange(BLOCK, dtype=np.int64)
    if not classes.small:
        shift, mask = np.uint64(16), np.uint64(0xFFFF)
        local = np.arange(BLOCK, dtype=np.uint64)
    for j, start in enumerate(range(0, classes.n, BLOCK)):
        block = classes.classes[start : start + BLOCK]
        size = block.size
        if classes.small:  # stable radix argsort of the 16-bit classes: positions grouped by class
            by_class = np.argsort(block, kind="stable")
        else:
            by_class = block.astype(np.uint64)
            by_class <<= shift
            by_class |= local[:size]
            by_class.sort()
            by_class &= mask
        counts = classes.block_counts[j]
        present = np.flatnonzero(counts)
        present_counts = counts[present]
        pos = np.repeat(bases[j, present] - (np.cumsum(present_counts) - present_counts), present_counts)
        pos += within[:size]
        bin_of[start : start + size][by_class] = slots[pos]
