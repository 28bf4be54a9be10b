"""Packing algorithms: exactness against item-by-item references, lower bounds against exhaustive
optima, validity/determinism on random mixes, and the plan's gap on the benchmark family."""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmops_jobs.pack.algorithms import Packing, best_fit_decreasing, first_fit_decreasing, pack
from vlmops_jobs.pack.algorithms.assign import assign
from vlmops_jobs.pack.algorithms.bfd import bfd_count
from vlmops_jobs.pack.algorithms.bounds import cardinality, lower_bounds, martello_toth, volume
from vlmops_jobs.pack.algorithms.classes import BLOCK, LengthClasses, size_counts
from vlmops_jobs.pack.algorithms.packing import descending_order
from vlmops_jobs.pack.algorithms.planner import PASSES

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks" / "packing"))

from mixes import MIXES, make_mix  # noqa: E402


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


def optimum(lengths, capacity) -> int:
    """The fewest sequences, by exhaustive search over subsets (a handful of items)."""
    items = tuple(sorted((x for x in lengths if 0 < x <= capacity), reverse=True))

    @lru_cache(maxsize=None)
    def best(mask: int) -> tuple[int, int]:  # (sequences, load of the last) for the items in mask
        if not mask:
            return (0, capacity)
        out = (len(items) + 1, 0)
        for i, x in enumerate(items):
            if mask >> i & 1:
                n, load = best(mask ^ (1 << i))
                out = min(out, (n, load + x) if load + x <= capacity else (n + 1, x))
        return out

    return best((1 << len(items)) - 1)[0]


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
    st.integers(1, 300).flatmap(lambda C: st.tuples(st.just(C), st.lists(st.integers(-2, C + 30), max_size=250)))
)


@settings(max_examples=150, deadline=None)
@given(lengths_st)
def test_bfd_and_ffd_count_as_item_by_item_references_and_every_plan_is_valid(arg):
    ((C, xs),) = arg
    L = np.array(xs, dtype=np.int64)
    bfd = best_fit_decreasing(L, C)
    ffd = first_fit_decreasing(L, C)
    improved = pack(L, C)
    for p in (bfd, ffd, improved):
        check(p, L, C)
    assert bfd.n_bins == item_by_item(xs, C, best=True)
    assert ffd.n_bins == item_by_item(xs, C, best=False)
    assert improved.n_bins <= bfd.n_bins
    assert bfd_count(L, C) == bfd.n_bins


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=120), st.integers(50, 120))
def test_bfd_never_uses_more_sequences_than_ffd(xs, C):
    L = np.array(xs)
    assert best_fit_decreasing(L, C).n_bins <= first_fit_decreasing(L, C).n_bins


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 40).flatmap(lambda C: st.tuples(st.just(C), st.lists(st.integers(1, C), min_size=1, max_size=9))))
def test_no_lower_bound_exceeds_the_optimum_of_small_instances(arg):
    C, xs = arg
    counts = size_counts(np.array(xs), C)
    opt = optimum(xs, C)
    bounds = lower_bounds(counts, C)
    assert max(bounds.values()) <= opt, (bounds, opt)
    assert opt <= pack(np.array(xs), C).n_bins <= best_fit_decreasing(np.array(xs), C).n_bins


@pytest.mark.parametrize("xs,C,expected", [
    ([4] * 9, 10, {"volume": 4, "martello-toth": 4, "cardinality": 5}),  # two per sequence, tokens say four
    ([34] * 10, 100, {"volume": 4, "martello-toth": 4, "cardinality": 5}),
    ([26] * 8, 100, {"volume": 3, "martello-toth": 3, "cardinality": 3}),  # three per sequence: 8 -> 3
    ([60, 60, 30, 30, 30], 100, {"volume": 3, "martello-toth": 3, "cardinality": 2}),
    ([70, 70, 70, 20], 100, {"volume": 3, "martello-toth": 3, "cardinality": 3}),  # 70s alone
])
def test_each_bound_on_hand_checked_cases(xs, C, expected):
    counts = size_counts(np.array(xs), C)
    got = {"volume": volume(counts, C), "martello-toth": martello_toth(counts, C), "cardinality": cardinality(counts, C)}
    assert got == expected
    assert max(got.values()) <= optimum(xs, C)


def test_the_cardinality_bound_proves_what_tokens_cannot():
    """607-640 tokens: 26 fit a 16384-token sequence with room to spare, 27 only with the rare
    600-606 ones; tokens alone would allow ~26.4 per sequence. The plan meets the bound."""
    rng = np.random.default_rng(0)
    L = np.concatenate([rng.integers(600, 607, 300), rng.integers(607, 641, 20000)])
    counts = size_counts(L, 16384)
    assert cardinality(counts, 16384) >= volume(counts, 16384) + 5
    assert pack(L, 16384).n_bins == cardinality(counts, 16384)


narrow_st = st.integers(60, 2000).flatmap(
    lambda C: st.integers(max(1, C // 30), C // 2).flatmap(
        lambda lo: st.tuples(st.just(C), st.lists(st.integers(lo, min(C, 3 * lo)), min_size=1, max_size=400))))
wide_st = st.integers(20, 3000).flatmap(
    lambda C: st.tuples(st.just(C), st.lists(st.integers(1, C), min_size=1, max_size=300)))


@pytest.mark.parametrize("name", sorted(PASSES))
@settings(max_examples=80, deadline=None)
@given(arg=st.one_of(narrow_st, wide_st))
def test_every_pass_alone_is_a_valid_packing(name, arg):
    C, xs = arg
    L = np.array(xs, dtype=np.int64)
    classes = LengthClasses(L, C)
    candidate = PASSES[name](classes.counts(), C)
    if candidate is None:
        return
    p = assign(classes, candidate.runs, candidate.n_bins, candidate.loads())
    check(p, L, C)


@settings(max_examples=120, deadline=None)
@given(st.one_of(narrow_st, wide_st))
def test_a_plan_never_uses_more_sequences_than_plain_bfd_and_reports_its_bound(arg):
    C, xs = arg
    L = np.array(xs, dtype=np.int64)
    p = pack(L, C)
    check(p, L, C)
    info = p.info
    assert p.n_bins <= info["bfdSequences"] == item_by_item(xs, C, best=True)
    assert info["lowerBound"] <= p.n_bins
    assert info["gapToLowerBound"] == round(p.n_bins / info["lowerBound"] - 1, 6)
    assert pack(L, C, improve=False).n_bins == info["bfdSequences"]


@pytest.mark.parametrize("kind", MIXES)
def test_plans_on_every_mix_are_valid_and_deterministic(kind):
    L = make_mix(kind, 20000, seed=7)
    for cap in (8192, 16384):
        a, b = pack(L, cap), pack(L.copy(), cap)
        check(a, L, cap)
        assert a.n_bins == b.n_bins and a.info == b.info
        assert np.array_equal(a.bin_of, b.bin_of) and np.array_equal(a.order, b.order)
        assert np.array_equal(a.loads, b.loads)


@pytest.mark.parametrize("kind", MIXES)
@pytest.mark.parametrize("cap", [8192, 16384])
def test_every_mix_of_the_family_is_packed_within_0_1_percent_of_its_lower_bound(kind, cap):
    L = make_mix(kind, 200_000, seed=5)
    counts = size_counts(L, cap)
    p = pack(L, cap)
    assert p.n_bins <= p.info["bfdSequences"]
    assert p.info["lowerBound"] == max(lower_bounds(counts, cap).values())
    assert p.n_bins <= p.info["lowerBound"] * 1.001, p.info


def test_a_plan_is_deterministic_and_equal_lengths_keep_input_order():
    L = make_mix("llava", 20000, seed=3)
    a, b = pack(L, 8192), pack(L.copy(), 8192)
    assert np.array_equal(a.bin_of, b.bin_of) and np.array_equal(a.order, b.order)
    # equal lengths keep input order in the decreasing order
    o = descending_order(np.array([5, 7, 5, 7, 5]), 10)
    assert o.tolist() == [1, 3, 0, 2, 4]


def test_equal_lengths_fill_their_slots_in_input_order_across_blocks():
    # BFD: 9 opens bin 0, the two 6s bins 1 and 2, the 4s fill those (FIFO) in input order
    L = np.array([4, 6, 4, 6, 9])
    assert pack(L, 10, improve=False).bin_of.tolist() == [1, 1, 2, 2, 0]
    # items of one length take that length's slots in input order, across assignment blocks: the
    # slots of a run of sequences go one per sequence in turn (round robin), three times here
    n = BLOCK * 2 + 17
    L = np.full(n, 3)
    p = pack(L, 9, improve=False)
    n_bins = n // 3 + (n % 3 > 0)
    assert p.n_bins == n_bins
    assert p.bin_of[:n_bins].tolist() == list(range(n_bins))  # first turn
    assert p.bin_of[n_bins : 2 * n_bins - 1].tolist() == list(range(n_bins - 1))  # the last sequence holds 1
    assert np.bincount(p.bin_of).tolist() == [3] * (n_bins - 1) + [n - 3 * (n_bins - 1)]


def test_too_long_and_empty_items_are_dropped_at_a_large_capacity():
    L = np.array([10, 70000, 30, 0, 65000, 5, -4])
    p = pack(L, 66000)
    check(p, L, 66000)
    assert p.bin_of[1] == -1 and p.bin_of[3] == -1 and p.bin_of[6] == -1


@pytest.mark.parametrize("lengths,capacity,message", [
    ([1, 2], 0, "capacity must be a positive integer"),
    ([1, 2], -5, "capacity must be a positive integer"),
    ([1, 2], 8.5, "capacity must be a positive integer"),
    ([1.5, 2.0], 10, "lengths must be integers"),
    ([[1, 2]], 10, "lengths must be one-dimensional"),
])
def test_bad_arguments_are_refused_not_guessed(lengths, capacity, message):
    for algorithm in ("BestFitDecreasing", "FirstFitDecreasing"):
        with pytest.raises(ValueError, match=message):
            pack(np.array(lengths), capacity, algorithm)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        pack(np.array([1]), 10, "Magic")
