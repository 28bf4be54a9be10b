"""PackedDataset job: token lengths, best-fit-decreasing plan, Energon/WebDataset shards.

`python -m vlmops_jobs.pack <step> [flags]`, one module per step (see docs/jobs-pack.md); the
output layout is `vlmops_contract.layouts.pack`.
"""
from ..common.cli import Job

JOB = Job(
    "vlmops_jobs.pack",
    ("lengths", "plan", "write", "finalize"),
    description="PackedDataset job: lengths (sharded) -> plan -> write (sharded) [-> finalize], "
                "all under the same --output.",
)
