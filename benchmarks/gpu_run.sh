#!/usr/bin/env bash
# One short GPU check (device machine): measured matmul peak, then training throughput of the
# medium config at two sequence lengths, MFU as a ratio of the peak measured in the same run.
# Needs megatron-core importable (the device image has torch; carry the wheel in .whl/).
set -euo pipefail
OUT=${OUT:-/tmp/out}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 benchmarks/gpu_matmul_peak.py | tee "$OUT/peak.json"
peak=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tflops'])" "$OUT/peak.json")
for seq in 4096 8192; do
  PYTHONUNBUFFERED=1 python3 benchmarks/gpu_train_throughput.py --seq "$seq" --steps 10 --peak-tflops "$peak" \
    | tee -a "$OUT/train.jsonl"
done
