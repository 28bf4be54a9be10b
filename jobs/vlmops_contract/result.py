"""The result line and exit codes every job shares with the operator and the local runner.

A job's last stdout line is one JSON object `{"vlmopsResult": {...}}`; the same line goes to the
container's termination message (Kubernetes `terminationMessagePath`, 4 KiB at most), which is how
the operator reads a finished pod's result without log access or storage credentials.
"""
from __future__ import annotations

import json
from typing import Any

RESULT_KEY = "vlmopsResult"
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LOG_ENV = "VLMOPS_TERMINATION_LOG"  # where a job writes it outside a pod (local runner)
MAX_TERMINATION_BYTES = 4096

EXIT_OK = 0
EXIT_FAILED = 1  # ran, but failed (e.g. an eval task crashed; partial results were written)
# Bad input: the job printed one `error: <field>: <why>` line and wrote nothing; retrying cannot
# help, so the Job's podFailurePolicy fails it at once.
EXIT_BAD_INPUT = 2


def result_line(result: dict[str, Any]) -> str:
    return json.dumps({RESULT_KEY: result}, sort_keys=True, separators=(",", ":"))


def parse_result(text: str) -> dict[str, Any] | None:
    """The result in a log or termination message (the last line that carries one)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and f'"{RESULT_KEY}"' in line:
            try:
                return json.loads(line)[RESULT_KEY]
            except (ValueError, KeyError):
                continue
    return None
