"""GPU training throughput of a medium LLaVA config: tokens/s and MFU (not run by tests).

One process, one GPU, bf16; the same build_model / forward_step as the job (megatron-core local
specs, block-diagonal packed-sequence mask, per-sub-sample RoPE positions), random packed
micro-batches (no I/O). `--optimizer megatron` (default) / `megatron-distributed` is the job's own
optimizer path (optim.py: megatron DDP + mixed-precision / distributed optimizer, fp32 masters);
`torch-adamw` is the old baseline on bf16 params. Prints one JSON line (first/last loss, memory).

    PYTHONPATH=jobs:operator python benchmarks/gpu_train_throughput.py --seq 4096 --steps 20 --peak-tflops 989

Peak defaults: H100 SXM bf16 dense 989 TFLOP/s (H200 the same chip: 989). The local (non-TE)
attention materializes S x S scores, so MFU here is a floor for what TE/flash attention gives.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "jobs"), os.path.join(HERE, "..", "operator")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--subsamples", type=int, default=8)
    ap.add_argument("--images", type=int, default=4, help="images per packed sequence")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--optimizer", default="megatron", choices=["megatron", "megatron-distributed", "torch-adamw"])
    ap.add_argument("--lr", type=float, default=1e-5)
    a = ap.parse_args()

    import torch
    import torch.distributed as dist

    from vlmops_jobs.train import cpu_compat
    from vlmops_jobs.train.model import Parallel, build_model, forward_step
    from vlmops_contract.model_shapes import LanguageShape, Preset, VisionShape
    from vlmops_jobs.train.flops import train_flops

    assert torch.cuda.is_available(), "needs a GPU"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29641")
    dist.init_process_group("nccl", rank=0, world_size=1)
    from megatron.core import parallel_state as ps

    ps.initialize_model_parallel(1, 1)
    torch.manual_seed(0)
    cpu_compat.seed_rng(0)
    medium = Preset(
        name="medium",
        vision=VisionShape(num_layers=12, hidden_size=768, num_heads=12, ffn_hidden_size=3072),
        language=LanguageShape(num_layers=16, hidden_size=2048, num_heads=16, num_query_groups=4, head_dim=128,
                               ffn_hidden_size=6144, vocab_size=32768, max_sequence_length=a.seq))
    vocab = 32768
    image_id = vocab - 1
    model = build_model(medium, vocab, image_id, Parallel(bf16=True)).cuda()
    if a.optimizer == "torch-adamw":
        ddp, opt = model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    else:
        from vlmops_jobs.train import optim

        ddp, opt = optim.wrap(model, optim.OptimizerSettings(
            lr=a.lr, min_lr=0.0, weight_decay=0.0, adam_beta2=0.95, clip_grad=1.0, bf16=True,
            distributed=a.optimizer == "megatron-distributed"))
    tpt = 64  # a 224x224 image: 16x16 patches of 14 px, 8x8 merged tokens
    # one packed sequence: `images` 224px images, text fills the rest, `subsamples` segments
    img_tokens = a.images * tpt
    text = a.seq - img_tokens + a.images
    ids = torch.randint(0, vocab - 2, (text,))
    ids[torch.linspace(10, text - 10, a.images).long()] = image_id
    S = a.seq
    seg = torch.arange(S) * a.subsamples // S
    pos = torch.cat([torch.arange(int((seg == i).sum())) for i in range(a.subsamples)])
    labels = torch.roll(ids, -1)
    labels[labels == image_id] = 0
    mb = {"input_ids": ids[None], "labels": labels[None], "loss_mask": torch.ones(1, text),
          "pixel_values": torch.randn(a.images * 256, 3 * 14 * 14), "position_ids": pos, "segment_ids": seg,
          "tokens": S, "image_grid_thw": torch.tensor([[1, 16, 16]] * a.images)}
    dev = torch.device("cuda")
    flops = train_flops(medium, vocab, S, [256] * a.images, [S // a.subsamples] * a.subsamples)
    losses = []
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            torch.cuda.synchronize()
            t = time.perf_counter()
        if a.optimizer == "torch-adamw":
            ls, n = forward_step(model, mb, dev)
            (ls / n).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            optim.zero_grads(ddp, opt)
            ls, n = forward_step(ddp, mb, dev)
            (ls / n).backward()
            optim.step(ddp, opt, a.lr)
        losses.append(float(ls / n))
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / a.steps
    print(json.dumps({"device": torch.cuda.get_device_name(), "optimizer": a.optimizer, "seq": S,
                      "firstLoss": round(losses[0], 4), "lastLoss": round(losses[-1], 4), "stepSeconds": round(dt, 4),
                      "tokensPerSecond": round(S / dt, 1), "tflops": round(flops / dt / 1e12, 1),
                      "mfu": round(flops / dt / (a.peak_tflops * 1e12), 4),
                      "maxMemoryGiB": round(torch.cuda.max_memory_allocated() / 2**30, 2)}))
    ps.destroy_model_parallel()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
