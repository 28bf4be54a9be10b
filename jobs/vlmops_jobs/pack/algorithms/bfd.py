"""Best-fit-decreasing on size classes: cost independent of the number of items.

Items go in decreasing length; each goes into the open bin with the smallest residual capacity
that still fits it, else a new bin. For a run of `k` items of length `s`, the best bin has
residual `r` (smallest `r >= s`); after one item it has `r - s`, and if that is still `>= s` it
is again the best bin (no open bin has a residual in `[s, r)`), so the bin takes `r // s` items
in a row. Bins with equal residuals are interchangeable for everything that follows, so the
packer keeps, for each residual value, a FIFO of runs of bin ids, and a bitmask of the non-empty
residual values (the best fit is the lowest set bit at or above `s`). The sequence count is
exactly that of item-by-item BFD with any tie-breaking; the tie-breaking here is deterministic:
items of equal length in input order, bins of equal residual in the order they reached it.

Bin ids live in runs `(start, stop)` (pure Python, no per-step numpy) because new bins come in
ranges and every queue is FIFO.
"""
from __future__ import annotations

from collections import deque
from itertools import chain
from typing import Iterable, NamedTuple

import numpy as np

from .classes import size_counts
from .packing import Incidences

Runs = list[tuple[int, int]]  # [start, stop) runs of consecutive bin ids


class Step(NamedTuple):
    """`placed` items of length `size` go, in order, `per_bin` to each bin of `bins` (the last
    bin takes the rest)."""

    size: int
    bins: Runs
    per_bin: int
    placed: int


class OpenBins(NamedTuple):
    """Bins left with `residual` free tokens."""

    residual: int
    bins: Runs


class BfdResult(NamedTuple):
    """`steps` in decreasing size; `open_bins`: the bins left with room (every other is full)."""

    n_bins: int
    steps: list[Step]
    open_bins: list[OpenBins]


def consecutive_runs(ids: np.ndarray) -> Runs:
    """Bin ids -> list of [start, stop) runs of consecutive ids."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        return []
    cut = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = ids[np.concatenate(([0], cut))]
    stops = ids[np.concatenate((cut - 1, [ids.size - 1]))] + 1
    return list(zip(starts.tolist(), stops.tolist()))


class _ResidualQueues:
    """Open bins by residual: a FIFO of runs and a bin count per residual, and a bitmask of the
    non-empty residuals (bit r set <=> some open bin has residual r > 0)."""

    def __init__(self) -> None:
        self.queues: dict[int, deque] = {}
        self.counts: dict[int, int] = {}
        self.nonempty = 0

    def best_fit(self, size: int) -> int | None:
        """The smallest residual >= size, by bit tricks."""
        above = self.nonempty >> size
        if not above:
            return None
        return size + (above & -above).bit_length() - 1

    def push(self, residual: int, runs: Runs, n_bins: int) -> None:
        queue = self.queues.get(residual)
        if queue is None:
            self.queues[residual] = deque(runs)
            self.counts[residual] = n_bins
            self.nonempty |= 1 << residual
        else:
            queue.extend(runs)
            self.counts[residual] += n_bins

    def take(self, residual: int, n_bins: int) -> Runs:
        """The first `n_bins` bins with `residual`, in FIFO order."""
        queue = self.queues[residual]
        got = []
        need = n_bins
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
        left = self.counts[residual] - n_bins
        if left == 0:
            del self.queues[residual], self.counts[residual]
            self.nonempty ^= 1 << residual
        else:
            self.counts[residual] = left
        return got

    def requeue(self, step: Step, residual: int, n_used: int) -> None:
        """Put a step's `n_used` bins (all with `residual` before it) back with what they have left."""
        last = step.placed - (n_used - 1) * step.per_bin  # items in the last bin of this step
        start, stop = step.bins[-1]
        if n_used > 1:
            left = residual - step.per_bin * step.size
            if left > 0:
                self.push(left, step.bins[:-1] + [(start, stop - 1)] if stop - 1 > start else step.bins[:-1],
                          n_used - 1)
        left = residual - last * step.size
        if left > 0:
            self.push(left, [(stop - 1, stop)], 1)

    def groups(self) -> list[OpenBins]:
        return [OpenBins(residual, list(queue)) for residual, queue in self.queues.items()]


def bfd(counts: np.ndarray, capacity: int, open_bins: Iterable[tuple[int, np.ndarray]] = (),
        n_bins: int = 0) -> BfdResult:
    """BFD of `counts[s]` items of each length s (see the module docstring).

    `open_bins`: already open bins as (residual, bin ids) groups, tried first-come first-served
    among equal residuals; new bins are numbered from `n_bins`."""
    queues = _ResidualQueues()
    for residual, ids in open_bins:
        runs = consecutive_runs(ids)
        if residual > 0 and runs:
            queues.push(int(residual), runs, sum(stop - start for start, stop in runs))
    counts = np.asarray(counts)
    sizes = np.flatnonzero(counts[1 : capacity + 1])[::-1] + 1
    steps = []
    for size, left in zip(sizes.tolist(), counts[sizes].tolist()):
        while left > 0:
            residual = queues.best_fit(size)
            if residual is not None:
                per_bin = residual // size
                n_used = min(-(-left // per_bin), queues.counts[residual])
                runs = queues.take(residual, n_used)
            else:
                residual = capacity
                per_bin = residual // size
                n_used = -(-left // per_bin)
                runs = [(n_bins, n_bins + n_used)]
                n_bins += n_used
            step = Step(size, runs, per_bin, min(n_used * per_bin, left))
            steps.append(step)
            left -= step.placed
            queues.requeue(step, residual, n_used)
    return BfdResult(n_bins, steps, queues.groups())


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


def incidences(steps: list[Step]) -> Incidences:
    """Steps -> incidences, one row per (step, bin)."""
    if not steps:
        return Incidences.empty()
    n_steps = len(steps)
    runs_per_step = np.fromiter(map(len, (step.bins for step in steps)), np.int64, n_steps)
    bounds = np.fromiter(chain.from_iterable(chain.from_iterable(step.bins for step in steps)), np.int64,
                         2 * int(runs_per_step.sum()))
    ids, run_lengths = _expand_runs(bounds)
    bins_per_step = np.add.reduceat(run_lengths, np.cumsum(runs_per_step) - runs_per_step)
    per_bin = np.fromiter((step.per_bin for step in steps), np.int64, n_steps)
    placed = np.fromiter((step.placed for step in steps), np.int64, n_steps)
    sizes = np.fromiter((step.size for step in steps), np.int64, n_steps)
    counts = np.repeat(per_bin, bins_per_step)
    counts[np.cumsum(bins_per_step) - 1] = placed - (bins_per_step - 1) * per_bin  # the last bin takes the rest
    return Incidences(np.repeat(sizes, bins_per_step), ids, counts)
