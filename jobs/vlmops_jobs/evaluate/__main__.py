"""`python -m vlmops_jobs.evaluate {run,compare} ...` (exit codes: `vlmops_jobs.common.cli`)."""
from . import JOB

if __name__ == "__main__":
    JOB.main()
