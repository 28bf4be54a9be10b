"""`python -m vlmops_jobs.rl {select,merge,train} [flags]`."""
from . import JOB

if __name__ == "__main__":
    JOB.main()
