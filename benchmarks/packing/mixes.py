"""The benchmark family of token-length mixes (synthetic, deterministic for a seed).

    llava        LLaVA-like: ~10% text only, else one image (12% two) of 64-3000 tokens + lognormal text
    captions     short captions, uniform 274-817 tokens
    image144, image256, image576, image729
                 a fixed image-token count (as LLaVA-1.5 pretraining: 576) + a short caption and the
                 chat template's overhead (~21 + lognormal median 22 tokens)
    bimodal      75% short chats (lognormal, median 180) + 25% long documents of 3000-7000 tokens
    video        4-32 frames of 196 tokens + lognormal text (median 120)
    uniform      uniform heavy: 1-8192 tokens

Used by `bench.py` and the pack job's tests (tests/jobs/pack).
"""
from __future__ import annotations

import numpy as np

from vlmops_jobs.common.synthetic import make_lengths

MIXES = ("llava", "captions", "image144", "image256", "image576", "image729", "bimodal", "video", "uniform")


def _caption(rng: np.random.Generator, n: int) -> np.ndarray:
    """A short caption plus the chat template's fixed overhead."""
    return 21 + np.clip(np.rint(rng.lognormal(np.log(22), 0.45, n)), 3, 240).astype(np.int64)


def make_mix(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """`n` token lengths (int64) of mix `kind` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if kind in ("llava", "captions"):
        return make_lengths(n, seed=seed, kind=kind).astype(np.int64)
    if kind.startswith("image"):
        return int(kind[len("image"):]) + _caption(rng, n)
    if kind == "bimodal":
        short = np.clip(rng.lognormal(np.log(180), 0.7, n), 16, 2000).astype(np.int64)
        return np.where(rng.random(n) < 0.25, rng.integers(3000, 7001, n), short)
    if kind == "video":
        return rng.integers(4, 33, n) * 196 + np.clip(rng.lognormal(np.log(120), 0.6, n), 10, 2000).astype(np.int64)
    if kind == "uniform":
        return rng.integers(1, 8193, n)
    raise ValueError(f"unknown mix {kind!r}; one of {', '.join(MIXES)}")
