"""The one `main` of the chart's single-file generators: write the file, or `--check` that the
committed copy is current (tests call --check so a stale file fails CI)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


def main(out: Path, render: Callable[[], str], script: str, description: str | None,
         argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is stale: run python charts/{script}", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0
