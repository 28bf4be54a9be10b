"""Bin packing of integer token lengths at memory speed.

Everything works on *size classes* instead of single items: lengths are small integers
(<= capacity), so one `bincount` gives the number of items of each length (`classes`), the
packers decide how many items of each length go into which sequence (`Incidences`: size, bin,
count), and a final linear-time assignment maps the items of each length, in input order, onto
those slots (`assign`).

- `bfd`: best-fit-decreasing on size classes, exactly item-by-item BFD's sequence count;
- `closing`: the closing pass (exact fill on the length histogram), on by default in `pack`,
  kept only if it uses strictly fewer sequences than BFD, so it is never worse;
- `ffd`: first-fit-decreasing (the same runs, a block maximum over the residuals);
- `packing`: the `Packing` result (item -> sequence) and the shared types.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .assign import assign
from .bfd import bfd, bin_loads, incidences
from .classes import LengthClasses
from .closing import exact_fill
from .ffd import first_fit_decreasing
from .packing import Incidences, Packing

__all__ = ["ALGORITHMS", "Packing", "best_fit_decreasing", "first_fit_decreasing", "pack", "plan_size_classes"]


class SizeClassPlan(NamedTuple):
    """`info`: bfdSequences, closingPass ('off' / 'skipped' / 'not better' / 'used')."""

    n_bins: int
    incidences: Incidences
    loads: np.ndarray
    info: dict


def closing_worthwhile(n_bins: int, lower: int) -> bool:
    """Run the closing pass only where BFD leaves room: >= 2 sequences and >= 0.01% above the
    lower bound (on wide length mixes BFD is already within a sequence or two of it)."""
    excess = n_bins - lower
    return excess >= 2 and excess * 10000 > lower


def plan_size_classes(counts: np.ndarray, capacity: int, closing: bool = True) -> SizeClassPlan:
    """BFD of `counts[s]` items of each length s, then the closing pass if it is worthwhile and
    strictly better."""
    counts = np.asarray(counts)
    plain = bfd(counts, capacity)
    info = {"bfdSequences": plain.n_bins, "closingPass": "off"}
    if closing:
        tokens = int(np.dot(counts[1 : capacity + 1].astype(np.int64), np.arange(1, capacity + 1, dtype=np.int64)))
        lower = -(-tokens // capacity)
        info["closingPass"] = "skipped"
        if closing_worthwhile(plain.n_bins, lower):
            closed = exact_fill(counts, capacity)
            info["closingPass"] = "not better"
            if closed is not None and closed.n_bins < plain.n_bins:
                info["closingPass"] = "used"
                return SizeClassPlan(closed.n_bins, closed.incidences, closed.loads, info)
    return SizeClassPlan(plain.n_bins, incidences(plain.steps), bin_loads(plain.n_bins, capacity, plain.open_bins), info)


def _best_fit(lengths: np.ndarray, capacity: int, closing: bool) -> Packing:
    classes = LengthClasses(lengths, capacity)
    plan = plan_size_classes(classes.counts(), capacity, closing)
    return assign(classes, capacity, plan.incidences, plan.n_bins, plan.loads)


def best_fit_decreasing(lengths: np.ndarray, capacity: int) -> Packing:
    """Plain BFD (no closing pass)."""
    return _best_fit(lengths, capacity, closing=False)


ALGORITHMS = {"BestFitDecreasing": best_fit_decreasing, "FirstFitDecreasing": first_fit_decreasing}


def pack(lengths: np.ndarray, capacity: int, algorithm: str = "BestFitDecreasing", closing: bool = True) -> Packing:
    """Plan with `algorithm`; for BFD, `closing` (default on) adds the exact-fill closing pass,
    kept only when it gives strictly fewer sequences."""
    if algorithm != "BestFitDecreasing":
        return ALGORITHMS[algorithm](lengths, capacity)
    return _best_fit(lengths, capacity, closing)
