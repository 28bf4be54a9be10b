"""`python -m vlmops_jobs.balance {embed,retrieve,balance} [flags]`."""
from . import JOB

if __name__ == "__main__":
    JOB.main()
