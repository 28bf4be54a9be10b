"""Concept-distribution statistics (before/after balancing) and the two PNG plots."""
from __future__ import annotations

import io
import math
from typing import Any

import numpy as np


# status.stats keys (api.md / BalancedCorpusStats): the result line carries only these; the
# manifest and stats.json carry the extras (keptFraction, expectedSamples, ...) too.
STATUS_KEYS = ("inputSamples", "selectedSamples", "threshold", "before", "after", "retrievalRecall")
SIDE_KEYS = ("conceptsCovered", "conceptsCovered10", "entropyBits", "effectiveConcepts", "gini", "headShare")


def status_stats(stats: dict[str, Any]) -> dict[str, Any]:
    out = {k: stats[k] for k in STATUS_KEYS if stats.get(k) is not None}
    for side in ("before", "after"):
        if side in out:
            out[side] = {k: out[side][k] for k in SIDE_KEYS if k in out[side]}
    return out


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


def distribution(counts: np.ndarray) -> dict[str, float | int]:
    """counts: per-concept number of samples holding the concept (whole vocabulary, zeros kept)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    n = len(c)
    if total > 0:
        p = c[c > 0] / total
        h = float(-(p * np.log2(p)).sum())
        s = np.sort(c)
        # Gini over the whole vocabulary (uncovered concepts count as zeros)
        gini = float((2.0 * np.arange(1, n + 1) - n - 1).dot(s) / (n * total))
        top = max(1, math.ceil(0.01 * n))
        head = float(s[-top:].sum() / total)
    else:
        h, gini, head = 0.0, 0.0, 0.0
    return {
        "conceptsCovered": int((c >= 1).sum()),
        "conceptsCovered10": int((c >= 10).sum()),
        "entropyBits": _r(h),
        "effectiveConcepts": _r(2.0 ** h, 3),
        "gini": _r(gini),
        "headShare": _r(head),
        "occurrences": int(total),
    }


def buckets(before: np.ndarray) -> np.ndarray:
    """Frequency bucket of each concept: floor(log2(count)) (count >= 1), -1 for uncovered."""
    b = np.full(len(before), -1, np.int64)
    nz = before > 0
    b[nz] = np.floor(np.log2(before[nz])).astype(np.int64)
    return b


def kept_by_bucket(before: np.ndarray, after: np.ndarray) -> list[dict[str, float | int]]:
    b = buckets(before)
    out = []
    for k in range(0, int(b.max()) + 1 if (b >= 0).any() else 0):
        m = b == k
        if not m.any():
            continue
        sb, sa = int(before[m].sum()), int(after[m].sum())
        out.append({"minCount": 2 ** k, "maxCount": 2 ** (k + 1) - 1, "concepts": int(m.sum()),
                    "before": sb, "after": sa, "keptFraction": _r(sa / sb if sb else 0.0)})
    return out


def _axes():
    """A figure and its axes on the Agg backend (no display in a pod)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.2))


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})  # no version: same bytes across builds
    plt.close(fig)
    return buf.getvalue()


def plot_rank(before: np.ndarray, after: np.ndarray, threshold: float) -> bytes:
    fig, ax = _axes()
    for name, c, style in (("before", before, "-"), ("after", after, "-")):
        s = np.sort(c[c > 0])[::-1]
        if len(s):
            ax.loglog(np.arange(1, len(s) + 1), s, style, label=f"{name} ({len(s)} concepts)")
    if threshold and threshold > 0:
        ax.axhline(threshold, color="gray", ls="--", lw=0.8, label=f"t = {threshold:.4g}")
    ax.set_xlabel("concept rank")
    ax.set_ylabel("samples holding the concept")
    ax.set_title("Concept frequency by rank")
    ax.legend()
    return _png(fig)


def plot_kept(rows: list[dict[str, float | int]]) -> bytes:
    fig, ax = _axes()
    labels = [f"{r['minCount']}-{r['maxCount']}" for r in rows]
    ax.bar(range(len(rows)), [r["keptFraction"] for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=60, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("concept frequency before balancing (samples)")
    ax.set_ylabel("kept fraction of concept occurrences")
    ax.set_title("Kept fraction by frequency bucket")
    return _png(fig)
