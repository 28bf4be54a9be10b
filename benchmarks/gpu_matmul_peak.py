"""Measured bf16 matmul peak of this GPU (TFLOP/s): the baseline that training MFU is a ratio of.

Prints one JSON line. Mean of 10 timed 8192^3 products after 3 warm-ups, on random data.
`measure()` is what other GPU benchmarks call to take the baseline in their own run.
"""
import json
import time

import torch


def measure(n: int = 8192) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 / ((time.perf_counter() - t) / 10) / 1e12


if __name__ == "__main__":
    print(json.dumps({"device": torch.cuda.get_device_name(), "tflops": round(measure(), 1)}))
