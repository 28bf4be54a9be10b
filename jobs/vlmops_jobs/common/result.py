"""The jobs' side of the result contract (`vlmops_contract.result`): print the result line, turn
bad input into one `error:` line and exit code 2, end the process cleanly."""
from __future__ import annotations

import os
import sys
from typing import Any

from vlmops_contract.result import (EXIT_BAD_INPUT, EXIT_OK, MAX_TERMINATION_BYTES, TERMINATION_LOG,
                                    TERMINATION_LOG_ENV, result_line)


class JobError(Exception):
    """A clear, user-facing error: the job prints it (naming the input and field) and exits 2."""


def emit_result(result: dict[str, Any]) -> None:
    line = result_line(result)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    path = os.environ.get(TERMINATION_LOG_ENV, TERMINATION_LOG)
    if len(line.encode()) <= MAX_TERMINATION_BYTES and os.path.isdir(os.path.dirname(path) or "."):
        try:
            with open(path, "w") as f:
                f.write(line)
        except OSError:
            pass  # not in a pod (or not writable): stdout is the record


def run_main(fn, argv: list[str] | None = None) -> int:
    """Run a job's main, turning JobError into one clear line on stderr and exit code 2."""
    try:
        fn(argv)
        return EXIT_OK
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def exit_now(code: int) -> None:
    """End the job process with `code`, skipping interpreter finalization.

    Everything a job produces is committed before its main returns; what finalization adds is
    risk: native thread pools (pyarrow's, seen here) can abort at teardown with "terminate called
    without an active exception", turning exit code 2 ("bad input, do not retry") or 0 into -6.
    """
    import multiprocessing

    # Helpers a library spawned (megatron's persistent checkpoint writer, loader workers) would
    # otherwise outlive the job: os._exit skips multiprocessing's own atexit cleanup.
    children = multiprocessing.active_children()
    for p in children:
        p.terminate()
    for p in children:
        p.join(timeout=10)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def shard_index(shard: int | None, shards: int, what: str) -> int:
    """`--shard`, else Kubernetes' `JOB_COMPLETION_INDEX` (Indexed Jobs), checked against `shards`."""

    if shard is None:
        env = os.environ.get("JOB_COMPLETION_INDEX")
        if env is None:
            raise JobError(f"{what} shard: not given (--shard) and JOB_COMPLETION_INDEX is not set")
        shard = int(env)
    if shards < 1 or not 0 <= shard < shards:
        raise JobError(f"{what} shard: {shard} is not in [0, {shards})")
    return shard
