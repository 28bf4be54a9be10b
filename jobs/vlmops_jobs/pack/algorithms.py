"""Bin packing of integer token lengths at memory speed.

Everything works on *size classes* instead of single items: lengths are small integers
(<= capacity), so one `bincount` gives the number of items of each length, the packers decide
how many items of each length go into which sequence ("incidences": size, bin, count), and a final
linear-time assignment maps the items of each length, in input order, onto those slots.

Best-fit-decreasing (BFD): items in decreasing length; each goes into the open bin with the
smallest residual capacity that still fits it, else a new bin. For a run of `k` items of length
`s`, the best bin has residual `r` (smallest `r >= s`); after one item it has `r - s`, and if
that is still `>= s` it is again the best bin (no open bin has a residual in `[s, r)`), so the bin
takes `r // s` items in a row. Bins with equal residuals are interchangeable for everything that
follows, so the packer keeps, for each residual value, a FIFO of runs of bin ids, and a bitmask of
the non-empty residual values (the best fit is the lowest set bit at or above `s`). The sequence
count is exactly that of item-by-item BFD with any tie-breaking; the tie-breaking here is deterministic: items of equal length in input order,
bins of equal residual in the order they reached it.

First-fit-decreasing (FFD): the same runs, each into the lowest-numbered bin that fits; a block
maximum over the residual array finds candidate bins without scanning them all.

Closing pass (`exact_fill`, on by default in `pack`): BFD leaves every bin whose residual drops
below the shortest item unfilled; on data with a narrow length range (e.g. short captions,
274-817 tokens) that is ~0.9% of the sequences, spread over all bins (not only the last ones).
The pass rebuilds the plan on the length histogram: each length class `s` forms "body" bins of
`t_s` equal items with `t_s` chosen so the residual `r = C - t_s*s` is near the middle of the
range of two-item sums; a reserved fraction of every class (sized from the demand) completes
those residuals *exactly* with one item of length `r` or a pair `a + (r-a)` (pair types are
used water-filling style, most available first, residuals with the fewest pair options first);
what is left (unmatched bins, unused items) goes through BFD with the unmatched bins as open
bins. Its cost depends on the number of distinct lengths, not on the number of items. `pack`
keeps it only if it uses strictly fewer sequences than BFD, so it is never worse.

Assignment (items -> sequences) without a global argsort: the slots of each length class are laid
out class after class; the items are processed in blocks of 65536, each block ordered by class
with a stable radix argsort of 16-bit classes (a 64-bit key sort beyond 65534 tokens), and each
item takes the next slot of its class (per-block offsets from per-block bincounts), so equal
lengths fill slots in input order. Cost: about two `np.sort` of the lengths.
"""
from __future__ import annotations

from collections import deque
from itertools import chain

import numpy as np

BLOCK = 1 << 16


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


def group_by_bin(bin_of: np.ndarray) -> np.ndarray:
    """Indices of placed items (bin >= 0), grouped by bin, input order inside a bin: one
    vectorised sort of 64-bit keys (bin << k | index)."""
    bin_of = np.asarray(bin_of)
    ok = bin_of >= 0
    idx = None if ok.all() else np.flatnonzero(ok)
    b = bin_of if idx is None else bin_of[idx]
    m = b.size
    if m == 0:
        return np.zeros(0, np.int64)
    ib = max(1, int(m - 1).bit_length())
    if ib + int(b.max()).bit_length() <= 64:
        key = b.astype(np.uint64)
        key <<= np.uint64(ib)
        key |= np.arange(m, dtype=np.uint64)
        key.sort()
        key &= np.uint64((1 << ib) - 1)
        pos = key.astype(np.int64)
    else:  # pragma: no cover - beyond 2**64 bin*item combinations
        pos = np.argsort(b, kind="stable")
    return pos if idx is None else idx[pos]


def descending_order(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """Indices of items with 0 < length <= capacity, by decreasing length, ties in input order."""
    L = np.asarray(lengths)
    ok = (L > 0) & (L <= capacity)
    idx = np.flatnonzero(ok) if not ok.all() else None
    sub = L if idx is None else L[idx]
    if capacity < 65536:
        key = (capacity - sub).astype(np.uint16)  # radix sort (stable, O(n)) on 16-bit keys
    else:
        key = (capacity - sub).astype(np.int64)
    o = np.argsort(key, kind="stable")
    return o if idx is None else idx[o]


def _runs(sorted_lengths: np.ndarray):
    """(start, stop, size) of equal-length runs in a sorted array."""
    n = sorted_lengths.size
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    cut = np.flatnonzero(sorted_lengths[1:] != sorted_lengths[:-1]) + 1
    starts = np.concatenate(([0], cut))
    stops = np.concatenate((cut, [n]))
    return starts, stops, sorted_lengths[starts].astype(np.int64)


def _finish(n_items: int, order: np.ndarray, item_bin: np.ndarray, n_bins: int, lengths: np.ndarray) -> Packing:
    bin_of = np.full(n_items, -1, dtype=np.int32 if n_bins < 2**31 else np.int64)
    bin_of[order] = item_bin
    loads = np.bincount(item_bin, weights=lengths[order], minlength=n_bins).astype(np.int64) if n_bins else np.zeros(0, np.int64)
    return Packing(bin_of=bin_of, n_bins=n_bins, loads=loads)


class _Classes:
    """Length classes of the items, counted block by block (`BLOCK` items).

    Class of item i = its length; `capacity + 1` if it is longer, 0 if it is <= 0 (both dropped).
    `cls` holds them as uint16 when `capacity < 65535` (else int64); `block_counts[j, s]` = items
    of class s in block j; `class_counts` = their sum."""

    def __init__(self, lengths: np.ndarray, capacity: int):
        L = np.asarray(lengths)
        if not np.issubdtype(L.dtype, np.integer):
            L = L.astype(np.int64)
        self.capacity = capacity
        self.n = n = L.size
        self.n_cls = C2 = capacity + 2
        top = capacity + 1
        self.small = C2 <= 65536
        nblk = max(1, -(-n // BLOCK))
        self.block_counts = bc = np.empty((nblk, C2), dtype=np.int32)
        hi = int(L.max()) if n else 0
        if self.small:
            self.cls = cls = np.empty(n, dtype=np.uint16)
        elif hi > top or (n and int(L.min()) < 0):
            self.cls = cls = np.clip(L, 0, top).astype(np.int64)
            L = cls
        else:
            self.cls = cls = L
        for j in range(nblk):
            kb = L[j * BLOCK : (j + 1) * BLOCK]
            if hi > top:
                kb = np.minimum(kb, top)
            try:
                bc[j] = np.bincount(kb, minlength=C2)
            except ValueError:  # negative lengths
                kb = np.maximum(kb, 0)
                bc[j] = np.bincount(kb, minlength=C2)
            if self.small:
                cls[j * BLOCK : (j + 1) * BLOCK] = kb
        self.class_counts = bc.sum(axis=0, dtype=np.int64)

    def counts(self) -> np.ndarray:
        """counts[s] for 1 <= s <= capacity; counts[0] = dropped items."""
        c = self.class_counts[: self.capacity + 1].copy()
        c[0] += self.class_counts[self.capacity + 1]
        return c


def size_counts(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """counts[s] = number of items of length s, for 1 <= s <= capacity; counts[0] = dropped items."""
    return _Classes(lengths, capacity).counts()


# ---------------------------------------------------------------------------------------------
# BFD on size classes
# ---------------------------------------------------------------------------------------------
def _ranges(ids: np.ndarray) -> list:
    """Bin ids -> list of [start, stop) runs of consecutive ids."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        return []
    cut = np.flatnonzero(np.diff(ids) != 1) + 1
    a = ids[np.concatenate(([0], cut))]
    b = ids[np.concatenate((cut - 1, [ids.size - 1]))] + 1
    return list(zip(a.tolist(), b.tolist()))


def bfd_steps(counts: np.ndarray, capacity: int, open_bins=(), n_bins: int = 0):
    """(n_bins, steps) of `_bfd` (see there)."""
    return _bfd(counts, capacity, open_bins, n_bins)[:2]


def _bfd(counts: np.ndarray, capacity: int, open_bins=(), n_bins: int = 0):
    """BFD on size classes only (cost independent of the number of items).

    `open_bins`: already open bins as (residual, bin ids) groups, tried first-come first-served
    among equal residuals; new bins are numbered from `n_bins`.
    Returns (n_bins, steps, open): each step is (size, bins, per_bin, placed): `placed` items of
    length `size` go, in order, `per_bin` to each bin of `bins` (the last one takes the rest);
    `bins` is a list of [start, stop) runs of bin ids. Steps come in decreasing size. `open`:
    the bins left with room, as (residual, runs) pairs (every other bin is full).
    Bin ids live in runs (pure Python, no per-step numpy) because new bins come in ranges and
    every queue is FIFO.
    """
    queues: dict[int, deque] = {}  # residual -> FIFO of [start, stop) runs
    cnt: dict[int, int] = {}
    nonempty = 0  # bit r set <=> some open bin has residual r (> 0): "smallest r >= s" by bit tricks
    steps = []

    def push(r: int, runs: list, m: int) -> None:
        nonlocal nonempty
        q = queues.get(r)
        if q is None:
            queues[r] = deque(runs)
            cnt[r] = m
            nonempty |= 1 << r
        else:
            q.extend(runs)
            cnt[r] += m

    def take(r: int, m: int) -> list:
        nonlocal nonempty
        q = queues[r]
        got = []
        need = m
        while need:
            a, b = q[0]
            if b - a <= need:
                got.append((a, b))
                need -= b - a
                q.popleft()
            else:
                got.append((a, a + need))
                q[0] = (a + need, b)
                need = 0
        left = cnt[r] - m
        if left == 0:
            del queues[r], cnt[r]
            nonempty ^= 1 << r
        else:
            cnt[r] = left
        return got

    for r, ids in open_bins:
        runs = _ranges(ids)
        if r > 0 and runs:
            push(int(r), runs, sum(b - a for a, b in runs))
    c = np.asarray(counts)
    sizes = np.flatnonzero(c[1 : capacity + 1])[::-1] + 1
    for s, k in zip(sizes.tolist(), c[sizes].tolist()):
        while k > 0:
            x = nonempty >> s
            if x:
                r = s + (x & -x).bit_length() - 1
                t = r // s
                m = -(-k // t)
                if m > cnt[r]:
                    m = cnt[r]
                runs = take(r, m)
            else:
                r = capacity
                t = r // s
                m = -(-k // t)
                runs = [(n_bins, n_bins + m)]
                n_bins += m
            placed = m * t
            if placed > k:
                placed = k
            steps.append((s, runs, t, placed))
            k -= placed
            last = placed - (m - 1) * t  # items in the last bin of this step
            a, b = runs[-1]
            if m > 1:
                rr = r - t * s
                if rr > 0:
                    push(rr, runs[:-1] + [(a, b - 1)] if b - 1 > a else runs[:-1], m - 1)
            rr = r - last * s
            if rr > 0:
                push(rr, [(b - 1, b)], 1)
    return n_bins, steps, [(r, list(q)) for r, q in queues.items()]


def _loads(n_bins: int, capacity: int, open_bins) -> np.ndarray:
    """Tokens per bin: `capacity` except for the open bins, which have `capacity - residual`."""
    loads = np.full(n_bins, capacity, dtype=np.int64)
    rs = [r for r, runs in open_bins for _ in runs]
    if rs:
        ab = np.fromiter(chain.from_iterable(chain.from_iterable(runs for _, runs in open_bins)), np.int64, 2 * len(rs))
        a, b = ab[0::2], ab[1::2]
        rl = b - a
        ids = np.repeat(a - (np.cumsum(rl) - rl), rl) + np.arange(int(rl.sum()))
        loads[ids] = capacity - np.repeat(np.asarray(rs, dtype=np.int64), rl)
    return loads


def _incidences(steps):
    """Steps -> (size, bin, count) arrays, one row per (step, bin)."""
    if not steps:
        z = np.zeros(0, np.int64)
        return z, z, z
    ns = len(steps)
    nr = np.fromiter(map(len, (st[1] for st in steps)), np.int64, ns)
    ab = np.fromiter(chain.from_iterable(chain.from_iterable(st[1] for st in steps)), np.int64, 2 * int(nr.sum()))
    a, b = ab[0::2], ab[1::2]
    rl = b - a
    tot = int(rl.sum())
    ids = np.repeat(a - (np.cumsum(rl) - rl), rl) + np.arange(tot)
    m = np.add.reduceat(rl, np.cumsum(nr) - nr) if ns else rl
    t = np.fromiter((st[2] for st in steps), np.int64, len(steps))
    placed = np.fromiter((st[3] for st in steps), np.int64, len(steps))
    sz = np.fromiter((st[0] for st in steps), np.int64, len(steps))
    reps = np.repeat(t, m)
    reps[np.cumsum(m) - 1] = placed - (m - 1) * t  # the last bin of a step takes the rest
    return np.repeat(sz, m), ids, reps


def bfd_count(lengths: np.ndarray, capacity: int) -> int:
    """Number of BFD sequences (the core of the plan, without the item -> sequence map)."""
    return bfd_steps(size_counts(lengths, capacity), capacity)[0]


# ---------------------------------------------------------------------------------------------
# Closing pass: exact fill on the length histogram
# ---------------------------------------------------------------------------------------------
def _water_fill(av: np.ndarray, need: int) -> np.ndarray:
    """Integer take <= av with sum == need (need < av.sum()), lowering the largest first."""
    v = np.sort(av)[::-1]
    S = np.cumsum(v)
    j = np.arange(1, v.size + 1)
    lam = (S - need) / j  # level if the top j types are lowered to it
    nxt = np.append(v[1:], 0)
    k = int(np.argmax(lam >= nxt))  # first j where the level stays above the next type
    level = max(0, int(np.floor(lam[k])))
    take = np.maximum(av - level, 0)
    excess = int(take.sum()) - need
    if excess > 0:
        take[np.flatnonzero(take > 0)[:excess]] -= 1
    return take


def _exact_fill_once(counts: np.ndarray, capacity: int, rho: float):
    """One body/filler construction with reserve fraction `rho`; returns
    (n_bins, unfilled bins, (size, bin, count) incidences, open bins)."""
    C = capacity
    c = np.asarray(counts, dtype=np.int64)
    sizes = np.flatnonzero(c[1 : C + 1]) + 1
    lo, hi = int(sizes[0]), int(sizes[-1])
    cs = c[sizes]
    t = np.clip(np.rint((C - lo - hi) / sizes).astype(np.int64), 1, C // sizes)
    r = C - t * sizes
    sd, td, rd, csd = sizes[::-1], t[::-1], r[::-1], cs[::-1]  # body bins: longest class first
    res = np.floor(csd * rho).astype(np.int64)
    body = csd - res
    k = body // td
    P = np.zeros(C + 1, dtype=np.int64)
    P[sd] = res + body - k * td  # reserve + body remainders
    nb = int(k.sum())
    inc_s = [np.repeat(sd, k)]
    inc_b = [np.arange(nb, dtype=np.int64)]
    inc_c = [np.repeat(td, k)]
    g = np.bincount(rd, weights=k, minlength=C + 1).astype(np.int64)  # bins per residual
    d = g.copy()
    d[0] = 0
    # bins grouped by residual (classes sorted by residual, their bin ranges concatenated)
    co = np.argsort(rd, kind="stable")
    kk = k[co]
    ob = np.repeat((np.cumsum(k) - k)[co] - (np.cumsum(kk) - kk), kk) + np.arange(nb)
    gstart = np.cumsum(g) - g  # start of each residual group in ob
    # singles
    sing = np.minimum(d, P)
    sing[0] = 0
    P -= sing
    rs = np.flatnonzero(sing)
    if rs.size:
        x = sing[rs]
        off = np.repeat(gstart[rs] - (np.cumsum(x) - x), x) + np.arange(int(x.sum()))
        inc_s.append(np.repeat(rs, x))
        inc_b.append(ob[off])
        inc_c.append(np.ones(off.size, np.int64))
    cur = gstart + sing
    left = d - sing
    # pairs, residuals with the fewest pair options first
    rs = np.flatnonzero(left)
    opts = rs // 2 - np.maximum(lo, rs - hi) + 1
    rs = rs[np.argsort(opts, kind="stable")]
    unfilled = []
    for rv, nopt in zip(rs.tolist(), np.sort(opts, kind="stable").tolist()):
        need = int(left[rv])
        x2 = 0
        if nopt > 0:
            a0 = max(lo, rv - hi)
            a = np.arange(a0, rv // 2 + 1)
            av = np.minimum(P[a], P[rv - a])
            if 2 * a[-1] == rv:
                av[-1] = P[a[-1]] // 2
            tot = int(av.sum())
            if tot:
                tk = av if tot <= need else _water_fill(av, need)
                nz = np.flatnonzero(tk)
                a, tk = a[nz], tk[nz]
                P[a] -= tk
                P[rv - a] -= tk
                x2 = int(tk.sum())
                ids = ob[cur[rv] : cur[rv] + x2]
                ra = np.repeat(a, tk)
                inc_s += [ra, rv - ra]
                inc_b += [ids, ids]
                inc_c += [np.ones(x2, np.int64)] * 2
        if x2 < need:
            unfilled.append((rv, ob[cur[rv] + x2 : cur[rv] + need]))
    n_unfilled = sum(u[1].size for u in unfilled)
    unfilled.sort(key=lambda u: u[0])
    nb, steps, still_open = _bfd(P, C, open_bins=unfilled, n_bins=nb)
    s2, b2, c2 = _incidences(steps)
    inc = (np.concatenate(inc_s + [s2]), np.concatenate(inc_b + [b2]), np.concatenate(inc_c + [c2]))
    return nb, n_unfilled, inc, still_open


def exact_fill(counts: np.ndarray, capacity: int, tries: int = 3):
    """Closing pass on the length histogram (see the module docstring).

    Returns (n_bins, (size, bin, count) incidences, loads) of the best of a few reserve
    fractions, or None when there is nothing to pack."""
    C = capacity
    c = np.asarray(counts, dtype=np.int64)
    sizes = np.flatnonzero(c[1 : C + 1]) + 1
    if sizes.size == 0:
        return None
    lo, hi = int(sizes[0]), int(sizes[-1])
    cs = c[sizes]
    n = int(cs.sum())
    t = np.clip(np.rint((C - lo - hi) / sizes).astype(np.int64), 1, C // sizes)
    r = C - t * sizes
    f = np.where(r == 0, 0.0, np.where((r >= lo) & (r <= hi), 1.0, 2.0))
    q = float((cs * f / t).sum())  # filler items needed if every item were a body item
    rho = 1.06 * q / (n + q) if n + q else 0.0  # pair types do not all match: ~6% spare
    best = None
    for _ in range(tries):
        nb, unfilled, inc, still_open = _exact_fill_once(c, C, rho)
        if best is None or nb < best[0]:
            best = (nb, inc, still_open)
        if not unfilled:
            break
        rho = min(1.0, rho + 2.2 * unfilled / max(n, 1))  # each unmatched bin lacked ~2 fillers
    return best[0], best[1], _loads(best[0], C, best[2])


# ---------------------------------------------------------------------------------------------
# Items -> sequences
# ---------------------------------------------------------------------------------------------
def assign(lengths, capacity: int, inc, n_bins: int, loads: np.ndarray | None = None) -> Packing:
    """Item-level packing from (size, bin, count) incidences: the items of one length fill that
    length's slots (incidences in the given order) in input order. Linear time, no global sort.

    `lengths` may be a `_Classes` of them (computed once per plan)."""
    cl = lengths if isinstance(lengths, _Classes) else _Classes(lengths, capacity)
    inc_s, inc_b, inc_c = (np.asarray(x, dtype=np.int64) for x in inc)
    C2, n = cl.n_cls, cl.n
    bdt = np.int32 if n_bins < 2**31 else np.int64
    # slots, class after class in decreasing length; dropped classes (capacity + 1, then 0) last
    n_placed = int(inc_c.sum())
    if n_placed != n - int(cl.class_counts[0] + cl.class_counts[capacity + 1]):
        raise ValueError("plan does not match the length counts")
    slot = np.empty(n, dtype=bdt)
    if inc_s.size > 1 and not (inc_s[1:] <= inc_s[:-1]).all():
        o = np.argsort((capacity - inc_s).astype(np.uint16 if capacity < 65536 else np.int64), kind="stable")
        slot[:n_placed] = np.repeat(inc_b[o], inc_c[o])
    else:
        slot[:n_placed] = np.repeat(inc_b, inc_c)
    slot[n_placed:] = -1
    if loads is None:
        loads = np.bincount(inc_b, weights=inc_c * inc_s, minlength=n_bins).astype(np.int64) if n_bins else np.zeros(0, np.int64)
    cc = cl.class_counts.copy()
    rank = np.arange(C2)[::-1].copy()  # layout position of each class: capacity, ..., 1, then capacity+1, 0
    rank[capacity + 1], rank[0] = C2 - 2, C2 - 1
    rank[1 : capacity + 1] -= 1
    first = np.zeros(C2, dtype=np.int64)
    by_rank = np.argsort(rank)
    first[by_rank] = np.cumsum(cc[by_rank]) - cc[by_rank]
    bin_of = np.empty(n, dtype=bdt)
    bc = cl.block_counts
    bases = np.cumsum(bc, axis=0, dtype=np.int64)
    bases -= bc
    bases += first  # first slot of each class for each block
    ar = np.arange(BLOCK, dtype=np.int64)
    if not cl.small:
        shift, mask = np.uint64(16), np.uint64(0xFFFF)
        loc = np.arange(BLOCK, dtype=np.uint64)
    for j, a in enumerate(range(0, n, BLOCK)):
        kb = cl.cls[a : a + BLOCK]
        m = kb.size
        if cl.small:  # stable radix argsort of the 16-bit classes: positions grouped by class
            idx = np.argsort(kb, kind="stable")
        else:
            idx = kb.astype(np.uint64)
            idx <<= shift
            idx |= loc[:m]
            idx.sort()
            idx &= mask
        cnt = bc[j]
        nz = np.flatnonzero(cnt)
        cz = cnt[nz]
        pos = np.repeat(bases[j, nz] - (np.cumsum(cz) - cz), cz)
        pos += ar[:m]
        bin_of[a : a + m][idx] = slot[pos]
    return Packing(bin_of=bin_of, n_bins=n_bins, loads=loads)


def materialize(steps, lengths: np.ndarray, capacity: int, n_bins: int) -> Packing:
    """Item-level packing from BFD size-class steps."""
    return assign(lengths, capacity, _incidences(steps), n_bins)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def best_fit_decreasing(lengths: np.ndarray, capacity: int) -> Packing:
    """Plain BFD (no closing pass)."""
    cl = _Classes(lengths, capacity)
    n_bins, inc, loads, _ = plan_bfd(cl.counts(), capacity, closing=False)
    return assign(cl, capacity, inc, n_bins, loads)


def first_fit_decreasing(lengths: np.ndarray, capacity: int, block: int = 1024) -> Packing:
    L = np.asarray(lengths, dtype=np.int64)
    order = descending_order(L, capacity)
    sl = L[order]
    starts, stops, sizes = _runs(sl)
    item_bin = np.empty(order.size, dtype=np.int64)
    n_max = max(1, order.size)
    res = np.zeros(((n_max + block - 1) // block) * block, dtype=np.int64)
    bmax = np.zeros(res.size // block, dtype=np.int64)
    n_bins = 0
    for a, b, s in zip(starts.tolist(), stops.tolist(), sizes.tolist()):
        pos = a
        k = b - pos
        nb_blocks = (n_bins + block - 1) // block
        if nb_blocks:
            cand_blocks = np.flatnonzero(bmax[:nb_blocks] >= s)
            ci = 0
            while k and ci < cand_blocks.size:
                blk = cand_blocks[ci : ci + 8]
                ci += 8
                seg_idx = (blk[:, None] * block + np.arange(block)).ravel()
                seg = res[seg_idx]
                fit = np.flatnonzero(seg >= s)
                bins = seg_idx[fit]
                caps = seg[fit] // s
                cum = np.cumsum(caps)
                n_use = int(np.searchsorted(cum, k)) + 1 if cum[-1] >= k else caps.size
                bins, caps = bins[:n_use], caps[:n_use].copy()
                over = int(caps.sum()) - k
                if over > 0:
                    caps[-1] -= over
                placed = int(caps.sum())
                item_bin[pos : pos + placed] = np.repeat(bins, caps)
                res[bins] -= caps * s
                bmax[blk] = res[seg_idx].reshape(-1, block).max(axis=1)
                pos += placed
                k -= placed
        if k:
            t = capacity // s
            m = -(-k // t)
            ids = np.arange(n_bins, n_bins + m, dtype=np.int64)
            item_bin[pos : pos + k] = np.repeat(ids, t)[:k]
            fill = np.full(m, t, dtype=np.int64)
            fill[-1] = k - (m - 1) * t
            res[ids] = capacity - fill * s
            touched = np.unique(ids // block)
            bmax[touched] = res[(touched[:, None] * block + np.arange(block)).ravel()].reshape(-1, block).max(axis=1)
            n_bins += m
    return _finish(L.size, order, item_bin, n_bins, L)


ALGORITHMS = {"BestFitDecreasing": best_fit_decreasing, "FirstFitDecreasing": first_fit_decreasing}


def closing_worthwhile(n_bins: int, lower: int) -> bool:
    """Run the closing pass only where BFD leaves room: >= 2 sequences and >= 0.01% above the
    lower bound (on wide length mixes BFD is already within a sequence or two of it)."""
    excess = n_bins - lower
    return excess >= 2 and excess * 10000 > lower


def plan_bfd(counts: np.ndarray, capacity: int, closing: bool = True):
    """Size-class plan: (n_bins, incidences, loads, info) with BFD, then the closing pass if it
    is worthwhile and strictly better. `info`: bfdSequences, closingPass
    ('off' / 'skipped' / 'not better' / 'used')."""
    counts = np.asarray(counts)
    n_bins, steps, still_open = _bfd(counts, capacity)
    info = {"bfdSequences": n_bins, "closingPass": "off"}
    if closing:
        tokens = int(np.dot(counts[1 : capacity + 1].astype(np.int64), np.arange(1, capacity + 1, dtype=np.int64)))
        lower = -(-tokens // capacity)
        info["closingPass"] = "skipped"
        if closing_worthwhile(n_bins, lower):
            ef = exact_fill(counts, capacity)
            info["closingPass"] = "not better"
            if ef is not None and ef[0] < n_bins:
                info["closingPass"] = "used"
                return ef[0], ef[1], ef[2], info
    return n_bins, _incidences(steps), _loads(n_bins, capacity, still_open), info


def pack(lengths: np.ndarray, capacity: int, algorithm: str = "BestFitDecreasing", closing: bool = True) -> Packing:
    """Plan with `algorithm`; for BFD, `closing` (default on) adds the exact-fill closing pass,
    kept only when it gives strictly fewer sequences."""
    if algorithm != "BestFitDecreasing":
        return ALGORITHMS[algorithm](lengths, capacity)
    cl = _Classes(lengths, capacity)
    n_bins, inc, loads, _ = plan_bfd(cl.counts(), capacity, closing)
    return assign(cl, capacity, inc, n_bins, loads)
