"""Best-fit-decreasing on size classes: cost independent of the number of items.

Items go in decreasing length; each goes into the open bin with the smallest residual capacity
that still fits it, else a new bin. For a run of `k` items of length `s`, the best bin has
residual `r` (smallest `r >= s`); after one item it has `r - s`, and if that is still `>= s` it
is again the best bin (no open bin has a residual in `[s, r)`), so the bin takes `r // s` items
in a row. Bins with equal residuals are interchangeable for everything that follows, so the
packer keeps, for each residual value, a FIFO of runs of bin ids, and a bitmap of the non-empty
residual values (the best fit is the lowest set bit at or above `s`; two levels of 64-bit words, so
each query is a few small-int operations). The sequence count is
exactly that of item-by-item BFD with any tie-breaking; the tie-breaking here is deterministic:
items of equal length in input order, bins of equal residual in the order they reached it.

Bin ids live in runs `(start, stop)` (pure Python, one loop without calls: this loop is most of
the plan's time on wide length mixes) because new bins come in ranges and every queue is FIFO.
"""
from __future__ import annotations

from collections import deque
from itertools import chain
from typing import Iterable, NamedTuple

import numpy as np

from .classes import size_counts
from .packing import Runs

BinRuns = list[tuple[int, int]]  # [start, stop) runs of consecutive bin ids


class OpenBins(NamedTuple):
    """Bins left with `residual` free tokens."""

    residual: int
    bins: BinRuns


class BfdResult(NamedTuple):
    """`runs` in decreasing size; `open_bins`: the bins left with room (every other is full)."""

    n_bins: int
    runs: Runs
    open_bins: list[OpenBins]


def consecutive_runs(ids: np.ndarray) -> BinRuns:
    """Bin ids -> list of [start, stop) runs of consecutive ids."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        return []
    cut = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = ids[np.concatenate(([0], cut))]
    stops = ids[np.concatenate((cut - 1, [ids.size - 1]))] + 1
    return list(zip(starts.tolist(), stops.tolist()))


def bfd(counts: np.ndarray, capacity: int, open_bins: Iterable[tuple[int, np.ndarray]] = (),
        n_bins: int = 0) -> BfdResult:
    """BFD of `counts[s]` items of each length s (see the module docstring).

    `open_bins`: already open bins as (residual, bin ids) groups, tried first-come first-served
    among equal residuals; new bins are numbered from `n_bins`."""
    queues: dict[int, deque] = {}  # residual -> FIFO of bin runs
    held: dict[int, int] = {}  # residual -> bins in its queue
    # residuals with open bins, as a two-level bitmap of 64-bit words (small ints: no big-int copies)
    words = [0] * ((capacity >> 6) + 1)  # bit r & 63 of words[r >> 6] <=> some open bin has residual r
    summary = 0  # bit w <=> words[w] != 0
    for residual, ids in open_bins:
        runs = consecutive_runs(ids)
        residual = int(residual)
        if residual > 0 and runs:
            if residual not in queues:
                queues[residual], held[residual] = deque(), 0
                words[residual >> 6] |= 1 << (residual & 63)
                summary |= 1 << (residual >> 6)
            queues[residual].extend(runs)
            held[residual] += sum(stop - start for start, stop in runs)
    counts = np.asarray(counts)
    sizes = np.flatnonzero(counts[1 : capacity + 1])[::-1] + 1
    rows: list[int] = []  # size, first, n_bins, per_bin, placed (flat)
    for size, left in zip(sizes.tolist(), counts[sizes].tolist()):
        while left > 0:
            w = size >> 6  # best fit: the smallest residual >= size
            bits = words[w] >> (size & 63)
            if bits:
                residual = size + (bits & -bits).bit_length() - 1
            else:
                higher = summary >> (w + 1)
                if higher:
                    w += (higher & -higher).bit_length()
                    bits = words[w]
                    residual = (w << 6) + (bits & -bits).bit_length() - 1
                else:
                    residual = 0
            if residual:  # take the first n_used bins of that residual
                per_bin = residual // size
                have = held[residual]
                n_used = -(-left // per_bin)
                if n_used >= have:
                    n_used = have
                    got = list(queues.pop(residual))
                    del held[residual]
                    w = residual >> 6
                    words[w] ^= 1 << (residual & 63)
                    if not words[w]:
                        summary ^= 1 << w
                else:
                    held[residual] = have - n_used
                    queue = queues[residual]
                    got = []
                    need = n_used
                    while need:
                        start, stop = queue[0]
                        if stop - start <= need:
                            got.append((start, stop))
                            need -= stop - start
                            queue.popleft()
                        else:
                            got.append((start, start + need))
                            queue[0] = (start + need, stop)
                            need = 0
            else:  # new bins
                residual = capacity
                per_bin = capacity // size
                n_used = -(-left // per_bin)
                got = [(n_bins, n_bins + n_used)]
                n_bins += n_used
            placed = n_used * per_bin
            if placed > left:
                placed = left
            for start, stop in got:
                rows += (size, start, stop - start, per_bin, (stop - start) * per_bin)
            last = placed - (n_used - 1) * per_bin  # items in the step's last bin
            rows[-1] -= per_bin - last
            left -= placed
            # requeue: every bin but the last keeps residual - per_bin*size, the last residual - last*size
            start, stop = got[-1]
            rest = residual - per_bin * size
            if n_used > 1 and rest > 0:
                if stop - 1 > start:
                    got[-1] = (start, stop - 1)
                else:
                    got.pop()
                if rest in queues:
                    queues[rest].extend(got)
                    held[rest] += n_used - 1
                else:
                    queues[rest], held[rest] = deque(got), n_used - 1
                    words[rest >> 6] |= 1 << (rest & 63)
                    summary |= 1 << (rest >> 6)
            rest = residual - last * size
            if rest > 0:
                if rest in queues:
                    queues[rest].append((stop - 1, stop))
                    held[rest] += 1
                else:
                    queues[rest], held[rest] = deque([(stop - 1, stop)]), 1
                    words[rest >> 6] |= 1 << (rest & 63)
                    summary |= 1 << (rest >> 6)
    table = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return BfdResult(n_bins, Runs(*table.T), [OpenBins(r, list(q)) for r, q in queues.items()])


def bfd_count(lengths: np.ndarray, capacity: int) -> int:
    """Number of BFD sequences (the core of the plan, without the item -> sequence map)."""
    return bfd(size_counts(lengths, capacity), capacity).n_bins


def _expand_runs(bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat (start, stop, start, stop, ...) -> (every bin id of the runs, length of each run)."""
    starts, stops = bounds[0::2], bounds[1::2]
    run_lengths = stops - starts
    ids = np.repeat(starts - (np.cumsum(run_lengths) - run_lengths), run_lengths) + np.arange(int(run_lengths.sum()))
    return ids, run_lengths


def bin_loads(n_bins: int, capacity: int, open_bins: list[OpenBins]) -> np.ndarray:
    """Tokens per bin: `capacity` except for the open bins, which have `capacity - residual`."""
    loads = np.full(n_bins, capacity, dtype=np.int64)
    residuals = [residual for residual, runs in open_bins for _ in runs]
    if residuals:
        bounds = np.fromiter(chain.from_iterable(chain.from_iterable(runs for _, runs in open_bins)), np.int64,
                             2 * len(residuals))
        ids, run_lengths = _expand_runs(bounds)
        loads[ids] = capacity - np.repeat(np.asarray(residuals, dtype=np.int64), run_lengths)
    return loads
