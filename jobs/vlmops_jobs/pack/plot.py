"""plan/stats.png: the length histogram (capacity marked) and the sequence fill distribution."""
from __future__ import annotations

import io

import numpy as np


def stats_png(lengths: np.ndarray, loads: np.ndarray, capacity: int) -> bytes | None:
    """The PNG's bytes, or None without matplotlib (optional for the plan itself)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if lengths.size:
        hi = max(int(lengths.max()), capacity)
        ax1.hist(lengths, bins=np.linspace(0, hi * 1.02, 80), color="#4c72b0")
    ax1.axvline(capacity, color="#c44e52", ls="--", label=f"capacity {capacity}")
    ax1.set_xlabel("sample length (tokens)")
    ax1.set_ylabel("samples")
    ax1.set_yscale("log")
    ax1.legend()
    if loads.size:
        ax2.hist(loads / capacity, bins=np.linspace(0, 1, 51), color="#55a868")
    ax2.set_xlabel("sequence fill (tokens / capacity)")
    ax2.set_ylabel("sequences")
    ax2.set_yscale("log")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
