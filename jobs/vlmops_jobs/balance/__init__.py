"""BalancedCorpus job: concept retrieval (faiss) and MetaCLIP / inverse-frequency balancing.

`python -m vlmops_jobs.balance {embed,retrieve,balance} [flags]` (docs/jobs-balance.md). Kept
cheap to import (the operator's contract tests parse commands with `JOB.parser(step)`): each
step's module, and with it numpy/pyarrow, is imported only when that step is parsed or run.
"""
from vlmops_jobs.common.cli import Job

JOB = Job(
    "vlmops_jobs.balance",
    ("embed", "retrieve", "balance"),
    description="BalancedCorpus job. embed (optional): image and concept-text embeddings with a local "
                "CLIP-family model; retrieve (one Indexed-Job shard): top-k concepts per sample and "
                "per-shard counts; balance: sum counts, solve t, select, write the manifest.",
)
