"""Run under torchrun (1 rank): how many weights one optimizer step changes.

Builds the tiny model from one random init, then takes one step at the given lr on the same
packed sequence three ways and prints one JSON line:
  fp32       megatron mixed-precision optimizer, fp32 params
  bf16       megatron mixed-precision optimizer (fp32 masters), bf16 params
  bf16_dist  megatron distributed optimizer (fp32 masters), bf16 params: the CR default on GPU
  bf16_raw   torch AdamW straight on bf16 params (no masters): the path that loses updates
"fraction" = share of the weights the optimizer owns (its master copies) that changed.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.distributed as dist


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--lr", type=float, default=1e-5)
    a = ap.parse_args()
    dist.init_process_group("gloo")
    from megatron.core import parallel_state as ps

    ps.initialize_model_parallel()
    from vlmops_jobs.train import cpu_compat, optim
    from vlmops_jobs.train.data import ChatTokenizer, PackedShards, build_microbatch
    from vlmops_jobs.train.model import Parallel, build_model, forward_step
    from vlmops_contract.model_shapes import PRESETS, padded_vocab

    cpu_compat.apply()
    tok = ChatTokenizer(a.tokenizer)
    preset = PRESETS["tiny"]
    vocab = padded_vocab(tok.vocab_size)
    mb = build_microbatch(PackedShards(a.data).read(0), tok, preset.vision.tile,
                          preset.language.max_sequence_length)

    def fresh(bf16: bool):
        torch.manual_seed(3)
        cpu_compat.seed_rng(3)
        return build_model(preset, vocab, tok.image, Parallel(bf16=bf16))

    out = {}
    for mode in ("fp32", "bf16", "bf16_dist", "bf16_raw"):
        bf16 = mode != "fp32"
        model = fresh(bf16)
        if mode == "bf16_raw":
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
            before = [p.detach().clone() for p in params]
            ls, n = forward_step(model, mb, torch.device("cpu"))
            (ls / n).backward()
            opt.step()
            after = params
        else:
            ddp, opt = optim.wrap(model, optim.OptimizerSettings(
                lr=a.lr, min_lr=0.0, weight_decay=0.0, adam_beta2=0.999, clip_grad=0.0, bf16=bf16,
                distributed=mode == "bf16_dist"))
            before = [p.detach().clone() for p in optim.main_params(opt)]
            optim.zero_grads(ddp, opt)
            ls, n = forward_step(ddp, mb, torch.device("cpu"))
            (ls / n).backward()
            optim.step(ddp, opt, a.lr)
            after = optim.main_params(opt)
        changed = sum(int((x.detach() != y).sum()) for x, y in zip(after, before))
        total = sum(y.numel() for y in before)
        out[mode] = {"fraction": changed / total, "weights": total,
                     "dtype": str(after[0].dtype).replace("torch.", "")}
    print(json.dumps(out), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
