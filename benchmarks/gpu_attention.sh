#!/usr/bin/env bash
# One short GPU check (device machine) for the packed attention backends: matmul peak, tokens/s, MFU
# and peak memory of the medium and 1.8b configs at 8192 and 16384 tokens per backend, the
# isolation check per backend. Writes $OUT/attention.jsonl and $OUT/attention.md.
# Needs megatron-core importable (the device image has torch; carry the wheel in .whl/).
set -euo pipefail
OUT=${OUT:-/tmp/out}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
PYTHONPATH=jobs:operator:${PYTHONPATH:-} PYTHONUNBUFFERED=1 python3 benchmarks/gpu_attention.py --steps 4 --warmup 2 \
  --out "$OUT/attention.md" | tee "$OUT/attention.jsonl"
