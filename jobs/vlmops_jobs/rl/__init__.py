"""VLMRLStage job: discrepancy-driven selection, then GRPO (TRL), then the release-format export.

`python -m vlmops_jobs.rl {select,merge,train} [flags]` (docs/jobs-rl.md). Cheap to import: a
step's module (and torch, transformers, TRL with it) is imported only when that step is parsed or run.
"""
from vlmops_jobs.common.cli import Job

JOB = Job(
    "vlmops_jobs.rl",
    ("select", "merge", "train"),
    description="VLMRLStage job. select (one Indexed-Job shard): N samples per prompt from the policy, "
                "rewards, per-prompt Pass@1 / Pass@N; merge: the discrepancy rule, the selection committed "
                "with lineage; train: GRPO phases (TRL GRPOTrainer), checkpoints, HF export, manifest.",
)
