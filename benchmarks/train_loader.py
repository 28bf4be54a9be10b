"""Data-loader throughput vs. the training step's consumption, on CPU.

Builds a packed dataset (tests' fixture: synthetic samples + tokenizer), then measures
(1) the loader alone: packed sequences -> micro-batches (tokenize, decode/resize/tile images,
positions, masks) in tokens/s on one thread, and (2) the tiny preset's fwd+bwd on the same
micro-batches (1 process, 1 thread). The loader must stay ahead of the step: ratio > 1.

    OMP_NUM_THREADS=1 PYTHONPATH=jobs:operator python benchmarks/train_loader.py [--samples 64]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "jobs"), os.path.join(HERE, "..", "operator"),
                os.path.join(HERE, "..", "tests", "jobs")]  # tests/jobs/train/fixtures: `train.fixtures`


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--capacity", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()

    import torch
    import torch.distributed as dist
    from train.fixtures.packed import make_packed_dataset

    from vlmops_jobs.train import cpu_compat
    from vlmops_jobs.train.data import ChatTokenizer, PackedShards, StepLoader
    from vlmops_jobs.train.model import Parallel, build_model, forward_step
    from vlmops_contract.model_shapes import PRESETS, padded_vocab

    torch.set_num_threads(1)
    root = tempfile.mkdtemp(prefix="vlmops-bench-loader-")
    d = make_packed_dataset(f"file://{root}/packed", f"{root}/tok", n_samples=a.samples, capacity=a.capacity)
    tok = ChatTokenizer(d["tokenizer"])
    sh = PackedShards(d["uri"])
    loader = StepLoader(sh, tok, seed=0, global_batch=1, dp_size=1, dp_rank=0, vision=PRESETS["tiny"].vision,
                        max_len=16384)
    n = len(sh)
    t = time.perf_counter()
    mbs = [loader.step_batches(s)[0] for s in range(n)]
    dt_load = time.perf_counter() - t
    tokens = sum(m["tokens"] for m in mbs)

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29631")
    dist.init_process_group("gloo", rank=0, world_size=1)
    from megatron.core import parallel_state as ps

    ps.initialize_model_parallel(1, 1)
    torch.manual_seed(0)
    cpu_compat.apply()
    cpu_compat.seed_rng(0)
    model = build_model(PRESETS["tiny"], padded_vocab(tok.vocab_size), tok.image, Parallel())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward_step(model, mbs[0], torch.device("cpu"))[0].backward()  # warm-up
    opt.zero_grad()
    t = time.perf_counter()
    step_tokens = 0
    for m in (mbs * (1 + a.steps // max(1, n)))[: a.steps]:
        ls, k = forward_step(model, m, torch.device("cpu"))
        (ls / k.clamp(min=1)).backward()
        opt.step()
        opt.zero_grad()
        step_tokens += m["tokens"]
    dt_step = time.perf_counter() - t
    out = {
        "sequences": n, "tokens": tokens,
        "loaderTokensPerSecond": round(tokens / dt_load, 1),
        "tinyStepTokensPerSecond": round(step_tokens / dt_step, 1),
        "ratio": round((tokens / dt_load) / (step_tokens / dt_step), 2),
    }
    print(json.dumps(out))
    ps.destroy_model_parallel()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
