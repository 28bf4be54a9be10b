"""`python -m vlmops_jobs.pack <lengths|plan|write|finalize> [--flags]` (see docs/jobs-pack.md)."""
import sys

from ..common.result import run_main
from .job import main

if __name__ == "__main__":
    sys.exit(run_main(main))
