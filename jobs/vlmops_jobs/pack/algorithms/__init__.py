"""Bin packing of integer token lengths at memory speed.

Everything works on *size classes* instead of single items: lengths are small integers
(<= capacity), so one `bincount` gives the number of items of each length (`classes`), the
packers decide how many items of each length go into which sequences (`Runs`), and a final
linear-time assignment maps the items of each length, in input order, onto those slots (`assign`).

- `planner`: BFD, the lower bound (`bounds`) and, where the bound says BFD may be far from the
  optimum, improvement passes (`countmax`, `closing`, `completion`); never more sequences than BFD;
- `bfd`: best-fit-decreasing on size classes, exactly item-by-item BFD's sequence count;
- `ffd`: first-fit-decreasing (the same runs, a block maximum over the residuals);
- `packing`: the `Packing` result (item -> sequence) and the shared types.
"""
from __future__ import annotations

import numpy as np

from .assign import assign
from .classes import LengthClasses
from .ffd import first_fit_decreasing
from .packing import Packing, Runs, SizeClassPlan
from .planner import plan_size_classes

__all__ = ["ALGORITHMS", "Packing", "Runs", "SizeClassPlan", "best_fit_decreasing", "check_arguments",
           "first_fit_decreasing", "pack", "plan_size_classes"]


def check_arguments(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """The lengths as an integer array; ValueError for a capacity that is not a positive integer
    or lengths that are not integers (floats are refused, not truncated)."""
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity <= 0:
        raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be one-dimensional, got shape {lengths.shape}")
    if lengths.size and not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be integers, got {lengths.dtype}")
    return lengths


def _best_fit(lengths: np.ndarray, capacity: int, improve: bool) -> Packing:
    lengths = check_arguments(lengths, capacity)
    capacity = int(capacity)
    classes = LengthClasses(lengths, capacity)
    plan = plan_size_classes(classes.counts(), capacity, improve)
    return assign(classes, plan.runs, plan.n_bins, plan.loads, plan.info)


def best_fit_decreasing(lengths: np.ndarray, capacity: int) -> Packing:
    """Plain BFD (no improvement pass)."""
    return _best_fit(lengths, capacity, improve=False)


def _first_fit(lengths: np.ndarray, capacity: int) -> Packing:
    return first_fit_decreasing(check_arguments(lengths, capacity), int(capacity))


ALGORITHMS = {"BestFitDecreasing": best_fit_decreasing, "FirstFitDecreasing": _first_fit}


def pack(lengths: np.ndarray, capacity: int, algorithm: str = "BestFitDecreasing", improve: bool = True) -> Packing:
    """Plan with `algorithm`. Items of length <= 0 or > capacity are not placed (bin -1). For BFD,
    `improve` (default on) lets the planner try its passes where BFD may be far from the bound;
    the plan never has more sequences than plain BFD and is deterministic."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if algorithm != "BestFitDecreasing":
        return ALGORITHMS[algorithm](lengths, capacity)
    return _best_fit(lengths, capacity, improve)
