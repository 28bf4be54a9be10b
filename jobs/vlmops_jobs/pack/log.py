"""The pack job's stderr log lines (stdout carries only the result line)."""
from __future__ import annotations

import sys


def log(msg: str) -> None:
    print(f"[pack] {msg}", file=sys.stderr, flush=True)


def throughput(step: str, items: int, nbytes: int, seconds: float) -> None:
    s = max(seconds, 1e-9)
    log(f"{step}: {items} items in {seconds:.3f}s = {items / s:.0f} items/s, {nbytes / s:.0f} bytes/s")
