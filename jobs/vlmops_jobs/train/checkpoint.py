"""Checkpoints: megatron-core distributed checkpointing through a local staging dir.

Layout under `--checkpoint-uri` (any fsspec URI):
    iter_0000010/            megatron dist checkpoint (metadata.json, __*_*.distcp): model weights and
                             the optimizer's state (fp32 master weights, Adam moments, step)
        rng/rank_<r>.pt      each rank's RNG states + the parallel layout they belong to
        train_state.json     {"step", "loss", "parallel", "trainable", "seed", "globalBatch",
                              "sequenceLength", "data", ...}: what a resume must keep
        model.json           preset + vocab (checked before any load: clear error on mismatch)
    latest                   {"iteration": "iter_0000010", "step": 10}: written LAST, only after
                             every rank's files are uploaded; older iter_* pruned to `keep` after it.

Weights and optimizer state go through megatron's sharded state dicts (optimizer in the "fully
reshardable" layout), so a resume may change TP and DP; RNG states are restored only when the
layout is unchanged (otherwise reseeded from (seed, step), and the resume event says so).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import torch
import torch.distributed as dist

from ..common import storage
from ..common.result import JobError
from . import cpu_compat

# The checkpoint layout (docstring above): every name in it is spelled here and only here.
LATEST = "latest"
ITER_PREFIX = "iter_"
TRAIN_STATE = "train_state.json"
MODEL_JSON = "model.json"
RNG_DIR = "rng"


def iter_name(step: int) -> str:
    return f"{ITER_PREFIX}{step:07d}"


def rng_file(local: str, rank: int) -> str:
    return os.path.join(local, RNG_DIR, f"rank_{rank:05d}.pt")


def staging_root(uri: str) -> str:
    base = os.environ.get("VLMOPS_STAGING_DIR") or tempfile.gettempdir()
    return os.path.join(base, "vlmops-ckpt-" + hashlib.sha1(uri.encode()).hexdigest()[:12])


def read_latest(uri: str) -> dict[str, Any] | None:
    p = storage.join(uri, LATEST)
    if not storage.exists(p):
        return None
    return storage.read_json(p)


def latest_iteration(uri: str) -> str | None:
    """The iteration dir `latest` points to under a checkpoint prefix, if any."""
    lt = read_latest(uri)
    return storage.join(uri, lt["iteration"]) if lt else None


def read_train_state(it_uri: str) -> dict[str, Any]:
    return storage.read_json(storage.join(it_uri, TRAIN_STATE))


def resolve(uri: str) -> tuple[str, dict[str, Any]]:
    """A checkpoint prefix (with `latest`) or one iteration dir -> (iteration URI, train_state)."""
    uri = uri.rstrip("/")
    it = latest_iteration(uri) or uri
    if not storage.exists(storage.join(it, TRAIN_STATE)):
        raise JobError(f"init-from {uri}: no checkpoint there (no `{LATEST}` and no {TRAIN_STATE})")
    return it, read_train_state(it)


def read_model_json(it_uri: str) -> dict[str, Any]:
    return storage.read_json(storage.join(it_uri, MODEL_JSON))


def _barrier():
    if dist.is_initialized():
        dist.barrier()


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


class Checkpointer:
    def __init__(self, uri: str, keep: int):
        self.uri = uri.rstrip("/")
        self.keep = max(1, keep)
        self.stage = staging_root(self.uri)

    # -------------------------------------------------------------------------------- save
    def save(self, step: int, ddp, optimizer, train_state: dict[str, Any], model_json: dict[str, Any],
             layout: dict[str, int]) -> str:
        from megatron.core import dist_checkpointing

        from . import optim

        name = iter_name(step)
        local = os.path.join(self.stage, name)
        remote = storage.join(self.uri, name)
        rank = dist.get_rank()
        if _local_rank() == 0:
            shutil.rmtree(local, ignore_errors=True)
            os.makedirs(os.path.join(local, RNG_DIR), exist_ok=True)
        if rank == 0:
            fs, p = storage.get_fs(remote)
            if fs.exists(p):  # a partial upload from a crashed attempt (never pointed to by `latest`)
                lt = read_latest(self.uri)
                if lt and lt.get("iteration") == name:
                    raise JobError(f"checkpoint {remote}: already the latest; refusing to overwrite it")
                fs.rm(p, recursive=True)
        _barrier()
        state = optim.sharded_state(ddp, optimizer, loading=False)
        with cpu_compat.cuda_calls_on_cpu():
            dist_checkpointing.save(state, local)
        torch.save({"layout": layout, **rng_states()}, rng_file(local, rank))
        if rank == 0:
            with open(os.path.join(local, TRAIN_STATE), "w") as f:
                json.dump(train_state, f, sort_keys=True)
            with open(os.path.join(local, MODEL_JSON), "w") as f:
                json.dump(model_json, f, sort_keys=True)
        _barrier()
        if _local_rank() == 0:  # one uploader per node; file names differ across nodes
            fs, p = storage.get_fs(remote)
            if not storage._is_object_store(fs):
                for root, _, _ in os.walk(local):
                    fs.makedirs(p.rstrip("/") + "/" + os.path.relpath(root, local), exist_ok=True)
            for root, _, files in os.walk(local):
                for fn in files:
                    src = os.path.join(root, fn)
                    rel = os.path.relpath(src, local)
                    fs.put_file(src, p.rstrip("/") + "/" + rel)
        _barrier()
        if rank == 0:
            storage.write_json_atomic(storage.join(self.uri, LATEST), {"iteration": name, "step": step})
            self._prune(name)
        if _local_rank() == 0:
            shutil.rmtree(local, ignore_errors=True)
        _barrier()
        return remote

    def _prune(self, newest: str) -> None:
        fs, p = storage.get_fs(self.uri)
        try:
            names = sorted(x.rstrip("/").rsplit("/", 1)[-1] for x in fs.ls(p, detail=False))
        except FileNotFoundError:
            return
        iters = [n for n in names if n.startswith(ITER_PREFIX) and n <= newest]
        for n in iters[: max(0, len(iters) - self.keep)]:
            fs.rm(p.rstrip("/") + "/" + n, recursive=True)

    # -------------------------------------------------------------------------------- load
    @staticmethod
    def download(it_uri: str) -> str:
        """Every node's local rank 0 copies one iteration dir to local disk; returns the path."""
        local = os.path.join(staging_root(it_uri), "load")
        if _local_rank() == 0:
            shutil.rmtree(local, ignore_errors=True)
            os.makedirs(local, exist_ok=True)
            fs, p = storage.get_fs(it_uri)
            base = p.rstrip("/")
            for f in fs.find(base):
                rel = f[len(base):].lstrip("/")
                dst = os.path.join(local, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                fs.get_file(f, dst)
        _barrier()
        return local

    @staticmethod
    def load_weights(model, local: str, what: str) -> None:
        from megatron.core import dist_checkpointing

        try:
            msd = model.sharded_state_dict()
            with cpu_compat.cuda_calls_on_cpu():
                state = dist_checkpointing.load(msd, local)
            # the checkpoint's common (non-tensor) part also carries the optimizer's: weights only here
            model.load_state_dict({k: v for k, v in state.items() if k in msd}, strict=True)
        except Exception as e:  # shape/key mismatch: one clear line
            raise JobError(f"{what}: checkpoint does not fit this model ({_first_line(e)})") from e

    @staticmethod
    def load_training_state(ddp, optimizer, local: str, what: str) -> None:
        """Weights + optimizer state (resharded to this run's TP/DP by megatron)."""
        from megatron.core import dist_checkpointing

        from . import optim

        state = optim.sharded_state(ddp, optimizer, loading=True)
        try:
            with cpu_compat.cuda_calls_on_cpu():
                loaded = dist_checkpointing.load(state, local)
        except Exception as e:
            raise JobError(f"{what}: checkpoint does not fit this model/optimizer ({_first_line(e)})") from e
        optim.load_state(ddp, optimizer, loaded)

    @staticmethod
    def load_rng(local: str, layout: dict[str, int]) -> bool:
        """This rank's RNG states when the checkpoint was written with the same layout."""
        p = rng_file(local, dist.get_rank())
        ok = os.path.exists(p)
        saved = torch.load(p, map_location="cpu", weights_only=False) if ok else None
        ok = bool(saved) and saved.get("layout") == layout
        flags = torch.tensor([int(ok)])
        if dist.is_initialized():  # all ranks restore, or none does
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        if not int(flags[0]):
            return False
        set_rng_states(saved)
        return True

    @staticmethod
    def cleanup(local: str) -> None:
        _barrier()
        if _local_rank() == 0:
            shutil.rmtree(local, ignore_errors=True)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def rng_states() -> dict[str, Any]:
    import random

    import numpy as np
    from megatron.core import tensor_parallel

    out: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                           "python": random.getstate(),
                           "tracker": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng_states(saved: dict[str, Any]) -> None:
    import random

    import numpy as np
    from megatron.core import tensor_parallel

    torch.set_rng_state(saved["torch"])
    np.random.set_state(saved["numpy"])
    random.setstate(saved["python"])
    tensor_parallel.get_cuda_rng_tracker().set_states(saved["tracker"])
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["cuda"])
