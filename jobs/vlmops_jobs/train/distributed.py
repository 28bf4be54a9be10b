"""The process groups: torch.distributed (NCCL on GPU, gloo on CPU) and megatron's model-parallel
groups, plus the seeding that needs them."""
from __future__ import annotations

import argparse
import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from . import cpu_compat


@dataclass(frozen=True)
class Groups:
    gpu: bool
    device: torch.device
    dp_rank: int
    dp_group: Any
    tp_group: Any


def setup_distributed(args: argparse.Namespace) -> Groups:
    gpu = not cpu_compat.needed()
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if "MASTER_ADDR" not in os.environ:  # plain `python -m vlmops_jobs.train`: a one-process group
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s.getsockname()[1]), RANK="0",
                              WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("nccl" if gpu else "gloo", timeout=datetime.timedelta(minutes=30))
    from megatron.core import parallel_state as ps

    ps.initialize_model_parallel(tensor_model_parallel_size=args.tensor, pipeline_model_parallel_size=args.pipeline,
                                 context_parallel_size=args.context)
    # seeded after the groups exist: megatron's model-parallel RNG tracker is per TP rank
    torch.manual_seed(args.seed)
    cpu_compat.apply()
    cpu_compat.seed_rng(args.seed)
    return Groups(gpu=gpu, device=torch.device("cuda") if gpu else torch.device("cpu"),
                  dp_rank=ps.get_data_parallel_rank(), dp_group=ps.get_data_parallel_group(),
                  tp_group=ps.get_tensor_model_parallel_group())


def teardown() -> None:
    """Every rank, together: wait for the others, then leave megatron's groups and torch's."""
    from megatron.core import parallel_state as ps

    dist.barrier()
    ps.destroy_model_parallel()
    dist.destroy_process_group()
