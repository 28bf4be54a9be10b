"""`python -m vlmops_jobs.pack <lengths|plan|write|finalize> [--flags]` (see docs/jobs-pack.md)."""
from . import JOB

if __name__ == "__main__":
    JOB.main()
