"""How a job reports its result: the last stdout line is one JSON object.

The same JSON is written to the container's termination message file (Kubernetes
`terminationMessagePath`, 4 KiB max), which is how the operator reads a finished pod's
stats without log access or storage credentials. The local runner parses stdout.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

TERMINATION_LOG = "/dev/termination-log"
MAX_TERMINATION_BYTES = 4096


class JobError(Exception):
    """A clear, user-facing error: the job prints it (naming the input and field) and exits 2."""


def emit_result(result: dict[str, Any]) -> None:
    line = json.dumps({"vlmopsResult": result}, sort_keys=True, separators=(",", ":"))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    path = os.environ.get("VLMOPS_TERMINATION_LOG", TERMINATION_LOG)
    if len(line.encode()) <= MAX_TERMINATION_BYTES and os.path.isdir(os.path.dirname(path) or "."):
        try:
            with open(path, "w") as f:
                f.write(line)
        except OSError:
            pass  # not in a pod (or not writable): stdout is the record


def parse_result(text: str) -> dict[str, Any] | None:
    """Find the result in a log or termination message (the last line that carries one)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and '"vlmopsResult"' in line:
            try:
                return json.loads(line)["vlmopsResult"]
            except (ValueError, KeyError):
                continue
    return None


def run_main(fn, argv: list[str] | None = None) -> int:
    """Run a job's main, turning JobError into one clear line on stderr and exit code 2."""
    try:
        fn(argv)
        return 0
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def exit_now(code: int) -> None:
    """End the job process with `code`, skipping interpreter finalization.

    Everything a job produces is committed before its main returns; what finalization adds is
    risk: native thread pools (pyarrow's, seen here) can abort at teardown with "terminate called
    without an active exception", turning exit code 2 ("bad input, do not retry") or 0 into -6.
    """
    import multiprocessing
    import os

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
    import os

    if shard is None:
        env = os.environ.get("JOB_COMPLETION_INDEX")
        if env is None:
            raise JobError(f"{what} shard: not given (--shard) and JOB_COMPLETION_INDEX is not set")
        shard = int(env)
    if shards < 1 or not 0 <= shard < shards:
        raise JobError(f"{what} shard: {shard} is not in [0, {shards})")
    return shard
