"""VLMTrainingStage workload: megatron-core LLaVA training on packed shards (see docs/jobs-train.md).

    torchrun --nnodes N --nproc-per-node G -m vlmops_jobs.train --preset tiny --data URI --tokenizer PATH ...
"""
