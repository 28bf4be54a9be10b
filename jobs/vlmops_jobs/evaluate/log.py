"""The job's progress log."""
import sys


def log(msg: str) -> None:
    # stderr: stdout's last line is reserved for the result (lmms-eval also logs to stdout).
    print(f"[vlmops-eval] {msg}", file=sys.stderr, flush=True)
