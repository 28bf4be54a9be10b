"""`python -m vlmops_jobs.pack <lengths|plan|write|finalize> [--flags]` (see docs/jobs-pack.md)."""

from ..common.result import exit_now, run_main
from .job import main

if __name__ == "__main__":
    exit_now(run_main(main))
