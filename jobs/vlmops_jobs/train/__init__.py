"""VLMTrainingStage workload: megatron-core LLaVA training on packed shards (see docs/jobs-train.md).

    torchrun --nnodes N --nproc-per-node G -m vlmops_jobs.train --preset tiny --data URI --tokenizer PATH ...

One step, `trainer` (its flags without naming it). The phases: trainer.validate (flags) ->
start (tokenizer, shards, resume / init-from decision; before any process group) -> distributed
(process groups) -> training (model, optimizer, restore, the step loop, checkpoints) -> outputs
(HF export, manifest, result). Importing this package does not import torch.
"""
from ..common.cli import Job

JOB = Job("vlmops_jobs.train", ("trainer",),
          description="VLMTrainingStage: megatron-core LLaVA training on packed shards, under torchrun")
