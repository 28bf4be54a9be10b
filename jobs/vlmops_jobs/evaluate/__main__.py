"""`python -m vlmops_jobs.evaluate {run,compare} ...`.

Exit codes: 0 success; 1 evaluation ran but some task failed (partial results written, result line
printed); 2 bad input (`error: <input> <field>: <what>`, nothing written).
"""
from __future__ import annotations

import sys

from ..common.result import exit_now, run_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "compare"):
        print("usage: python -m vlmops_jobs.evaluate {run,compare} [flags]  (--help after the step)", file=sys.stderr)
        return 2
    step, rest = argv[0], argv[1:]
    if step == "compare":
        from .compare import compare_main

        return run_main(compare_main, rest)
    from .run import EvalFailed, run

    try:
        return run_main(run, rest)
    except EvalFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    exit_now(main())
