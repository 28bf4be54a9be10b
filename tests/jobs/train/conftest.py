"""Fixtures shared by the training job's in-process tests: a small packed dataset and a one-rank
process group with megatron's parallel state."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/jobs: `train.fixtures`
from train.fixtures.packed import make_packed_dataset  # noqa: E402


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("u")
    return make_packed_dataset(f"file://{root}/packed", str(root / "tok"), n_samples=6, capacity=400, seed=1)


@pytest.fixture
def one_rank(monkeypatch):
    """A one-process gloo group with megatron's parallel state and RNG tracker, torn down after."""
    import socket

    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from vlmops_jobs.train import cpu_compat

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ps.initialize_model_parallel(1, 1)
        torch.manual_seed(0)
        cpu_compat.apply()
        cpu_compat.seed_rng(0)
        yield
    finally:
        ps.destroy_model_parallel()
        dist.destroy_process_group()
