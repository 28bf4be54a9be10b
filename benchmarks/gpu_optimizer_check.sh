#!/usr/bin/env bash
# One short GPU check of the optimizer path (device machine, ~3 min): the medium config in bf16 with
# fp32 masters, 20 steps each with megatron's mixed-precision optimizer and its distributed optimizer
# (at DP=1 the distributed optimizer shards nothing: its memory should match the other's), and the old
# torch-AdamW-on-bf16 baseline. Each line: first/last loss (must fall), step time, max memory.
set -euo pipefail
OUT=${OUT:-/tmp/out}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
for opt in megatron megatron-distributed torch-adamw; do
  PYTHONUNBUFFERED=1 python3 benchmarks/gpu_train_throughput.py --seq 4096 --steps 20 --optimizer "$opt" --lr 1e-4 \
    | tee -a "$OUT/optimizer.jsonl"
done
