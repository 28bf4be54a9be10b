"""Packed-sequence attention backends on one GPU: tokens/s, MFU and peak memory, plus the isolation
check (not run by tests; `--smoke` runs a tiny version on a CPU so the script does not rot).

In one run: the measured bf16 matmul peak (the MFU baseline), then for each config (`medium`: the
LLaVA config of the earlier measurements; `1.8b`: RICE-ViT-L-sized vision + a 1.5B Qwen3-shaped
LLM) x packed length (8192, 16384) x attention backend available here (te, varlen, flex, sdpa,
local): training step time with the job's own build_model / forward_step / megatron optimizer on
random packed micro-batches of uneven sub-samples with images. MFU counts attention per
sub-sample (flops.microbatch_flops), as the job reports it. A backend that runs out of memory is
reported as such (the local path at 16384 does, on the 1.8b config).

Isolation: for every backend (forward-only ones too), changing sub-sample A of a packed sequence
must leave sub-sample B's logits unchanged, and the logits must equal the masked reference's.

    PYTHONPATH=jobs:operator python benchmarks/gpu_attention.py --out benchmarks/results/attention.md
    PYTHONPATH=jobs:operator python benchmarks/gpu_attention.py --smoke      # CPU, seconds
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "jobs"), os.path.join(HERE, "..", "operator")]

IMAGE = (1, 16, 16)  # a 224x224 image: 16x16 patches of 14 px, 64 merged tokens


def configs(max_len: int):
    from vlmops_contract.model_shapes import LanguageShape, Preset, VisionShape

    return {
        "tiny": Preset(name="tiny-bench", vision=VisionShape(num_layers=2, hidden_size=64, num_heads=4,
                                                            ffn_hidden_size=128),
                       language=LanguageShape(num_layers=2, hidden_size=64, num_heads=4, num_query_groups=2,
                                              head_dim=16, ffn_hidden_size=128, vocab_size=512,
                                              max_sequence_length=max_len)),
        "medium": Preset(name="medium", vision=VisionShape(num_layers=12, hidden_size=768, num_heads=12,
                                                           ffn_hidden_size=3072),
                         language=LanguageShape(num_layers=16, hidden_size=2048, num_heads=16, num_query_groups=4,
                                                head_dim=128, ffn_hidden_size=6144, vocab_size=32768,
                                                max_sequence_length=max_len)),
        "1.8b": Preset(name="1.8b", vision=VisionShape(num_layers=24, hidden_size=1024, num_heads=16,
                                                       ffn_hidden_size=4096),
                       language=LanguageShape(num_layers=24, hidden_size=2048, num_heads=16, num_query_groups=8,
                                              head_dim=128, ffn_hidden_size=8192, vocab_size=32768,
                                              max_sequence_length=max_len)),
    }


def packed_batch(torch, preset, seq: int, seed: int, image_id: int):
    """One packed micro-batch of `seq` tokens: uneven sub-samples (1/16 to 1/4 of the sequence), an
    image at the start of every other one; the loader's keys."""
    g = torch.Generator().manual_seed(seed)
    img_tokens = IMAGE[0] * IMAGE[1] * IMAGE[2] // preset.vision.merge ** 2
    lengths, left = [], seq
    while left > 0:
        n = int(torch.randint(max(seq // 16, img_tokens + 8), max(seq // 4, img_tokens + 9), (1,), generator=g))
        n = left if left - n < img_tokens + 8 else n
        lengths.append(n)
        left -= n
    ids, seg, pos, grids = [], [], [], []
    for k, n in enumerate(lengths):
        with_image = k % 2 == 0
        text = torch.randint(10, preset.language.vocab_size - 10, (n - img_tokens if with_image else n,),
                             generator=g).tolist()
        ids += ([image_id] if with_image else []) + text
        grids += [IMAGE] if with_image else []
        seg += [k] * n
        pos += list(range(n))
    ids_t = torch.tensor(ids)
    labels = torch.roll(ids_t, -1)
    labels[labels == image_id] = 0
    n_patches = sum(t * h * w for t, h, w in grids)
    return {"input_ids": ids_t[None], "labels": labels[None], "loss_mask": (ids_t != image_id).float()[None],
            "pixel_values": torch.randn(n_patches, 3 * preset.vision.patch ** 2, generator=g),
            "image_grid_thw": torch.tensor(grids).reshape(-1, 3), "position_ids": torch.tensor(pos),
            "segment_ids": torch.tensor(seg), "tokens": seq}, lengths


def throughput(torch, preset, seq: int, backend: str, dev, steps: int, warmup: int, peak: float | None):
    from vlmops_jobs.train import cpu_compat, optim
    from vlmops_jobs.train.flops import microbatch_flops
    from vlmops_jobs.train.model import Parallel, build_model, forward_step

    gpu = dev.type == "cuda"
    vocab = preset.language.vocab_size
    torch.manual_seed(0)
    cpu_compat.seed_rng(0)
    model = build_model(preset, vocab, vocab - 1, Parallel(bf16=gpu, attention=backend)).to(dev)
    ddp, opt = optim.wrap(model, optim.OptimizerSettings(lr=1e-5, min_lr=0.0, weight_decay=0.0, adam_beta2=0.95,
                                                         clip_grad=1.0, bf16=gpu, distributed=False))
    mb, lengths = packed_batch(torch, preset, seq, 1, vocab - 1)
    flops = microbatch_flops(preset, vocab, [mb])
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            if gpu:
                torch.cuda.synchronize()
            t = time.perf_counter()
        optim.zero_grads(ddp, opt)
        ls, n = forward_step(ddp, mb, dev)
        (ls / n).backward()
        optim.step(ddp, opt, 1e-5)
    if gpu:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    out = {"stepSeconds": round(dt, 4), "tokensPerSecond": round(seq / dt, 1), "tflops": round(flops / dt / 1e12, 2),
           "subSamples": len(lengths), "params": sum(p.numel() for p in model.parameters())}
    if peak:
        out["mfu"] = round(flops / dt / (peak * 1e12), 4)
    if gpu:
        out["peakMemoryGiB"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    return out


def isolation(torch, backends: list[str], dev) -> dict[str, dict]:
    """Tiny config (bf16 on a GPU: the fused kernels need it; fp32 on a CPU): max |delta| of B's logits
    when A changes, and max |delta| vs the masked path."""
    from vlmops_jobs.train import cpu_compat
    from vlmops_jobs.train.model import Parallel, build_model, logits

    preset = configs(1024)["tiny"]
    vocab = preset.language.vocab_size
    mb, lengths = packed_batch(torch, preset, 512, 2, vocab - 1)
    changed = dict(mb, input_ids=mb["input_ids"].clone(), pixel_values=mb["pixel_values"].clone())
    changed["input_ids"][0, 1:4] = (changed["input_ids"][0, 1:4] + 7) % 400 + 10  # A's text (after its image)
    changed["pixel_values"][: IMAGE[0] * IMAGE[1] * IMAGE[2]] += 0.5  # A's image
    a = mb["segment_ids"].to(dev) == 0
    torch.manual_seed(0)
    cpu_compat.seed_rng(0)
    half = dev.type == "cuda"
    tol, tol_ref = (1e-2, 0.25) if half else (1e-4, 1e-3)  # bf16 logits carry ~3 significant digits
    ref = build_model(preset, vocab, vocab - 1, Parallel(bf16=half)).to(dev).eval()
    base_ref = logits(ref, mb)[0]
    out = {}
    for backend in backends:
        m = build_model(preset, vocab, vocab - 1, Parallel(bf16=half, attention=backend)).to(dev).eval()
        m.load_state_dict(ref.state_dict())
        base, after = logits(m, mb)[0], logits(m, changed)[0]
        out[backend] = {"otherSubSamplesMaxDelta": float((after[~a] - base[~a]).abs().max()),
                        "changedSubSampleMaxDelta": float((after[a] - base[a]).abs().max()),
                        "vsMaskedMaxDelta": float((base - base_ref).abs().max())}
        out[backend]["holds"] = (out[backend]["otherSubSamplesMaxDelta"] <= tol
                                 and out[backend]["changedSubSampleMaxDelta"] > 10 * tol
                                 and out[backend]["vsMaskedMaxDelta"] <= tol_ref)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="medium,1.8b")
    ap.add_argument("--seqs", default="8192,16384")
    ap.add_argument("--backends", default="", help="comma list (default: every backend this machine can train with)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default="", help="also write a markdown table here")
    ap.add_argument("--smoke", action="store_true", help="tiny config, 256 tokens, 1 step: checks the script runs")
    a = ap.parse_args()

    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from vlmops_jobs.train import attention, cpu_compat

    gpu = torch.cuda.is_available()
    dev = torch.device("cuda" if gpu else "cpu")
    if a.smoke:
        a.configs, a.seqs, a.steps, a.warmup = "tiny", "256", 1, 0
    elif not gpu:
        sys.exit("error: needs a GPU (or --smoke)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s.getsockname()[1]))
    dist.init_process_group("nccl" if gpu else "gloo", rank=0, world_size=1)
    ps.initialize_model_parallel(1, 1)
    cpu_compat.apply()
    kind = "cuda" if gpu else "cpu"
    backends = a.backends.split(",") if a.backends else attention.available(kind)
    backends = [b for b in backends if b != "local"] + (["local"] if "local" in backends else [])  # local last: may OOM
    rows = []
    if gpu:
        from gpu_matmul_peak import measure  # benchmarks/: the same baseline as the other GPU scripts

        peak = measure()
    else:
        peak = None
    head = {"device": torch.cuda.get_device_name() if gpu else "cpu", "matmulPeakTflops": peak and round(peak, 1),
            "torch": torch.__version__, "backends": backends}
    print(json.dumps(head), flush=True)
    seqs = [int(x) for x in a.seqs.split(",")]
    for name in a.configs.split(","):
        for seq in seqs:
            preset = configs(max(seqs))[name]
            for backend in backends:
                row = {"config": name, "seq": seq, "attention": backend}
                try:
                    row.update(throughput(torch, preset, seq, backend, dev, a.steps, a.warmup, peak))
                except torch.OutOfMemoryError:
                    row["oom"] = True
                gc.collect()
                if gpu:
                    torch.cuda.empty_cache()
                print(json.dumps(row), flush=True)
                rows.append(row)
    iso = isolation(torch, backends + attention.forward_only(kind), dev)
    print(json.dumps({"isolation": iso}), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(f"Device: {head['device']}; measured bf16 matmul peak: {head['matmulPeakTflops']} TFLOP/s; "
                    f"torch {head['torch']}\n\n| config | tokens | attention | tokens/s | TFLOP/s | MFU | peak GiB |\n"
                    "|---|---|---|---|---|---|---|\n")
            for r in rows:
                f.write(f"| {r['config']} | {r['seq']} | {r['attention']} | "
                        + (" OOM | | | |" if r.get("oom") else
                           f"{r['tokensPerSecond']} | {r['tflops']} | {r.get('mfu', '')} | {r.get('peakMemoryGiB', '')} |")
                        + "\n")
            f.write("\n| attention | other sub-samples max delta | changed sub-sample max delta | vs masked | holds |\n"
                    "|---|---|---|---|---|\n")
            for b, r in iso.items():
                f.write(f"| {b} | {r['otherSubSamplesMaxDelta']:.2e} | {r['changedSubSampleMaxDelta']:.2e} | "
                        f"{r['vsMaskedMaxDelta']:.2e} | {r['holds']} |\n")
    ps.destroy_model_parallel()
    dist.destroy_process_group()
    if not all(r["holds"] for r in iso.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
