"""Packing algorithms: exactness against item-by-item references + hypothesis properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmops_jobs.common.synthetic import make_lengths
from vlmops_jobs.pack.algorithms import Packing, best_fit_decreasing, first_fit_decreasing, pack, plan_size_classes
from vlmops_jobs.pack.algorithms.assign import assign
from vlmops_jobs.pack.algorithms.bfd import bfd_count
from vlmops_jobs.pack.algorithms.classes import BLOCK, size_counts
from vlmops_jobs.pack.algorithms.closing import exact_fill
from vlmops_jobs.pack.algorithms.packing import descending_order


def item_by_item(lengths, capacity, best: bool) -> int:
    """Sequences used by textbook BFD (best=True) or FFD, one item at a time."""
    residuals: list[int] = []
    for x in sorted((x for x in lengths if 0 < x <= capacity), reverse=True):
        fits = [b for b, r in enumerate(residuals) if r >= x]
        if not fits:
            residuals.append(capacity - x)
            continue
        b = min(fits, key=lambda b: (residuals[b], b)) if best else fits[0]
        residuals[b] -= x
    return len(residuals)


def check(p: Packing, lengths: np.ndarray, capacity: int) -> None:
    ok = (lengths > 0) & (lengths <= capacity)
    assert (p.bin_of[~ok] == -1).all() and (p.bin_of[ok] >= 0).all()  # placed exactly once or dropped
    loads = np.bincount(p.bin_of[ok], weights=lengths[ok], minlength=p.n_bins)
    assert (loads <= capacity).all() and (loads > 0).all()
    assert np.array_equal(loads, p.loads)
    assert sorted(p.order.tolist()) == np.flatnonzero(ok).tolist()
    assert (np.diff(p.bin_of[p.order]) >= 0).all()  # grouped by sequence
    tokens = int(lengths[ok].sum())
    assert p.n_bins >= -(-tokens // capacity)


lengths_st = st.tuples(
    st.integers(1, 300).flatmap(lambda C: st.tuples(st.just(C), st.lists(st.integers(1, C + 30), max_size=250)))
)


@settings(max_examples=150, deadline=None)
@given(lengths_st)
def test_bfd_and_ffd_count_as_item_by_item_references_and_every_plan_is_valid(arg):
    ((C, xs),) = arg
    L = np.array(xs, dtype=np.int64)
    bfd = best_fit_decreasing(L, C)
    ffd = first_fit_decreasing(L, C)
    closed = pack(L, C, "BestFitDecreasing", closing=True)
    for p in (bfd, ffd, closed):
        check(p, L, C)
    assert bfd.n_bins == item_by_item(xs, C, best=True)
    assert ffd.n_bins == item_by_item(xs, C, best=False)
    assert closed.n_bins <= bfd.n_bins <= ffd.n_bins or bfd.n_bins <= item_by_item(xs, C, best=False)
    assert bfd_count(L, C) == bfd.n_bins


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=120), st.integers(50, 120))
def test_bfd_never_uses_more_sequences_than_ffd(xs, C):
    L = np.array(xs)
    assert best_fit_decreasing(L, C).n_bins <= first_fit_decreasing(L, C).n_bins


def test_a_plan_is_deterministic_and_equal_lengths_keep_input_order():
    L = make_lengths(20000, seed=3)
    a, b = pack(L, 8192), pack(L.copy(), 8192)
    assert np.array_equal(a.bin_of, b.bin_of) and np.array_equal(a.order, b.order)
    # equal lengths keep input order in the decreasing order
    o = descending_order(np.array([5, 7, 5, 7, 5]), 10)
    assert o.tolist() == [1, 3, 0, 2, 4]


@pytest.mark.parametrize("kind,cap", [("llava", 8192), ("llava", 16384), ("captions", 8192)])
def test_realistic_mixes_pack_within_one_percent_of_the_lower_bound(kind, cap):
    L = make_lengths(50000, seed=1, kind=kind)
    p = pack(L, cap)
    check(p, L, cap)
    lb = -(-int(L[L <= cap].sum()) // cap)
    assert p.n_bins <= first_fit_decreasing(L, cap).n_bins
    assert p.n_bins <= lb * 1.01


narrow_st = st.integers(60, 2000).flatmap(
    lambda C: st.integers(max(1, C // 30), C // 2).flatmap(
        lambda lo: st.tuples(st.just(C), st.lists(st.integers(lo, min(C, 3 * lo)), min_size=1, max_size=400))))


@settings(max_examples=120, deadline=None)
@given(narrow_st)
def test_the_closing_pass_is_valid_alone_and_a_plan_never_uses_more_sequences_than_plain_bfd(arg):
    """Narrow length ranges (where BFD leaves gaps): the exact-fill pass is a valid packing on its
    own, and `pack` (closing on) never uses more sequences than plain BFD."""
    C, xs = arg
    L = np.array(xs, dtype=np.int64)
    bfd = best_fit_decreasing(L, C)
    ef = exact_fill(size_counts(L, C), C)
    raw = assign(L, C, ef.incidences, ef.n_bins, ef.loads)
    check(raw, L, C)
    assert raw.n_bins == ef.n_bins
    closed = pack(L, C)
    check(closed, L, C)
    assert closed.n_bins <= bfd.n_bins == item_by_item(xs, C, best=True)
    assert pack(L, C, closing=False).n_bins == bfd.n_bins


@pytest.mark.parametrize("n,cap", [(200_000, 8192), (200_000, 16384)])
def test_the_closing_pass_brings_captions_within_0_1_percent_of_the_lower_bound(n, cap):
    L = make_lengths(n, seed=5, kind="captions")
    lb = -(-int(L.sum()) // cap)
    bfd = best_fit_decreasing(L, cap)
    p = pack(L, cap)
    check(p, L, cap)
    assert bfd.n_bins > lb * 1.002  # BFD leaves ~0.4-0.9% here
    assert p.n_bins <= lb * 1.001
    plan = plan_size_classes(size_counts(L, cap), cap)
    assert plan.info == {"bfdSequences": bfd.n_bins, "closingPass": "used"} and plan.n_bins == p.n_bins


@pytest.mark.parametrize("kind", ["llava", "captions"])
def test_a_plan_with_the_closing_pass_is_deterministic(kind):
    L = make_lengths(30000, seed=7, kind=kind)
    a, b = pack(L, 8192), pack(L.copy().astype(np.int64), 8192)
    assert a.n_bins == b.n_bins
    assert np.array_equal(a.bin_of, b.bin_of) and np.array_equal(a.order, b.order) and np.array_equal(a.loads, b.loads)


def test_equal_lengths_fill_their_slots_in_input_order_across_blocks():
    # BFD: 9 opens bin 0, the two 6s bins 1 and 2, the 4s fill those (FIFO) in input order
    L = np.array([4, 6, 4, 6, 9])
    assert pack(L, 10, closing=False).bin_of.tolist() == [1, 1, 2, 2, 0]
    # items of one length take that length's slots in input order, across assignment blocks
    n = BLOCK * 2 + 17
    L = np.full(n, 3)
    p = pack(L, 9, closing=False)
    assert (np.diff(p.bin_of) >= 0).all() and p.n_bins == n // 3 + (n % 3 > 0)


def test_too_long_and_empty_items_are_dropped_at_a_large_capacity():
    L = np.array([10, 70000, 30, 0, 65000, 5])
    p = pack(L, 66000)
    check(p, L, 66000)
    assert p.bin_of[1] == -1 and p.bin_of[3] == -1
