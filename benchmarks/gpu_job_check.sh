#!/usr/bin/env bash
# The training job itself on one GPU, unchanged (torchrun -m vlmops_jobs.train), on a packed dataset
# made by the quickstart (copied to .gpucheck/): bf16 path, checkpoint + resume, HF export, result line.
set -euo pipefail
OUT=${OUT:-/tmp/out}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:-}:$PWD/operator:$PWD/jobs" PYTHONUNBUFFERED=1
run() {
  torchrun --standalone --nnodes 1 --nproc-per-node 1 -m vlmops_jobs.train --preset tiny \
    --data .gpucheck/packed --tokenizer .gpucheck/tokenizer --global-batch 4 --lr 5e-4 \
    --checkpoint-uri /tmp/gck --checkpoint-interval 10 --output /tmp/gout --metrics-port 0 --progress-interval 5 "$@"
}
run --train-iters 20 2>&1 | grep -vi warn | tee "$OUT/first.log" | tail -4
run --train-iters 30 2>&1 | grep -vi warn | tee "$OUT/resume.log" | tail -4   # resumes from step 20
ls /tmp/gout/hf | tee "$OUT/hf.txt"
