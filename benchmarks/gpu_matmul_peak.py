"""Measured bf16 matmul peak of this GPU (TFLOP/s): the baseline that training MFU is a ratio of.

Prints one JSON line. Mean of 10 timed 8192^3 products after 3 warm-ups, on random data.
"""
import json
import time

import torch

n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(10):
    a @ b
torch.cuda.synchronize()
dt = (time.perf_counter() - t) / 10
print(json.dumps({"device": torch.cuda.get_device_name(), "tflops": round(2 * n**3 / dt / 1e12, 1)}))
