#!/usr/bin/env bash
# One short GPU check of concept retrieval: faiss's GPU index gives the same top-k as CPU exact search
# on a seeded set, and its queries/s and TFLOP/s against the bf16 matmul peak measured in the same run.
# Writes $OUT/retrieval.log (the last line is the JSON summary); exits non-zero when the results differ.
# Needs faiss with GPU support: the data image built with FAISS=gpu (mount the repo, pass
# --peak-tflops: the image has no torch), or faiss-gpu==1.15.1 + its nvidia-*-cu12 wheels in .whl/.
# Extra arguments go to gpu_retrieval.py (e.g. --concepts 1000000 --dim 1024).
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
PYTHONPATH=jobs:operator:${PYTHONPATH:-} PYTHONUNBUFFERED=1 python3 benchmarks/gpu_retrieval.py "$@" \
  | tee "$OUT/retrieval.log"
