"""Run a child's container command as local processes, pod-style.

Same contract as in the cluster: the container's command and env, `JOB_COMPLETION_INDEX` for
Indexed Jobs, torchrun for PyTorchJobs (one node, all ranks local), the result JSON read from
the termination-message file (`VLMOPS_TERMINATION_LOG`), exit code 2 = bad input (no retry).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vlmops_contract.result import TERMINATION_LOG_ENV

# Where `vlmops` and `vlmops_jobs` are importable from (the source tree's operator/ and jobs/, or
# site-packages when installed): pods get the same code the runner runs.
# Found, not imported: the runner never loads job code itself.
_CODE_ROOTS = [str(Path(__file__).resolve().parents[2])]
if (_jobs := importlib.util.find_spec("vlmops_jobs")) is not None and _jobs.origin:
    _CODE_ROOTS.append(str(Path(_jobs.origin).resolve().parents[1]))


@dataclass
class PodRun:
    index: int
    exit_code: int
    message: str  # termination message (the job's result JSON) or the log tail on error
    log: Path
    seconds: float


def _local_command(command: list[str], world_size: int | None) -> list[str]:
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    if command[0] == "torchrun":
        # All ranks on this machine: one node, nodes*gpusPerNode processes, rendezvous on loopback.
        args = list(command[1:])
        for flag in ("--nnodes", "--nproc-per-node"):
            if flag in args:
                i = args.index(flag)
                del args[i:i + 2]
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                "--nproc-per-node", str(world_size or 1), *_local_metrics(args)]
    return command


def _local_metrics(args: list[str]) -> list[str]:
    """Locally rank 0 serves no /metrics (`--metrics-port 0`): the pod's fixed port would collide
    between two stages or runs at once, and a port probed free beforehand can be taken by another
    process (torchrun's own rendezvous, gloo) before rank 0 binds it. Progress is in progress.json."""
    if "--metrics-port" in args:
        i = args.index("--metrics-port")
        args = [*args[:i + 1], "0", *args[i + 2:]]
    return args


def _env(container: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        # valueFrom (Secret refs): locally the credentials come from the caller's environment.
    path = list(dict.fromkeys(_CODE_ROOTS))
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("VLMOPS_IMAGE", None)  # locally the source tree runs, not the image (code.tree identifies it)
    env.update(extra)
    return env


def kill_tree(pid: int, grace: float = 10.0) -> None:
    """Terminate a process and every descendant (torchrun's ranks, their helper processes), like
    a pod's containers dying together; SIGKILL whatever is left after `grace` seconds."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def run_pods(container: dict[str, Any], indices: list[int], parallel: int, log_dir: Path, child: str,
             world_size: int | None = None, on_done: Callable[[PodRun], None] | None = None) -> list[PodRun]:
    command = _local_command(list(container["command"]), world_size)

    def one(index: int) -> PodRun:
        log = log_dir / f"{child}-{index}.log"
        term = log_dir / f".{child}-{index}.termination"
        term.unlink(missing_ok=True)
        env = _env(container, {"JOB_COMPLETION_INDEX": str(index), TERMINATION_LOG_ENV: str(term)})
        t0 = time.perf_counter()
        with open(log, "w") as f:
            f.write("$ " + " ".join(command) + "\n")
            f.flush()
            proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env)
            running.append(proc)
            proc.wait()
        message = term.read_text() if term.exists() else ""
        if proc.returncode != 0 and not message:
            lines = log.read_text(errors="replace").strip().splitlines()
            errors = [ln for ln in lines if ln.startswith("error:")]
            message = (errors[-1] if errors else "\n".join(lines[-5:]))[-4000:]
        run = PodRun(index, proc.returncode, message, log, time.perf_counter() - t0)
        if on_done:
            on_done(run)
        return run

    running: list[subprocess.Popen] = []
    pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(indices))))
    try:
        return list(pool.map(one, indices))
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): take every pod down with us
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in running:
            kill_tree(proc.pid)
        raise
    finally:
        pool.shutdown(wait=True)
