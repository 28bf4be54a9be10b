"""Phase 1 of `run`: check and resolve every input before anything is evaluated or written.

Version pin, model args, tasks, limit, batch size, the include path (remote: copied to the work
dir), task and lmms-eval model names, then the checkpoint (`model.resolve_model`: copy, digest,
verify). Any failure is a `JobError`: one `error:` line, exit 2, nothing written.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..common.result import JobError
from . import lmms
from .inputs import EvalInputs, fetch_include_path, parse_limit, parse_model_args, parse_tasks
from .log import log
from .model import ResolvedModel, precheck_model, resolve_model


def check_version(expected: str | None) -> str:
    """The installed lmms-eval version, which must be the pinned one (spec.lmmsEval.version) if given."""
    installed = lmms.installed_version()
    if expected and expected != installed:
        raise JobError(f"lmmsEval version: pinned {expected}, this image has lmms-eval {installed}")
    return installed


def run_parameters(args: argparse.Namespace, installed: str, model_cls: type, spec_args: dict[str, str],
                   tasks: list[str], limit: int | float | None, include_digest: str | None = None) -> dict[str, Any]:
    """The resolved parameters: a retry with equal parameters (and model digest) reuses the output. No
    locations: the task directory is named by its content digest (its URI is a manifest location)."""
    return {
        "lmmsEvalVersion": installed,
        "model": args.lmms_eval_model,
        "modelArgs": dict(sorted(spec_args.items())),
        "modelClass": f"{model_cls.__module__}.{model_cls.__name__}",
        "modelDefaults": lmms.model_defaults(model_cls),
        "tasks": tasks,
        "batchSize": args.batch_size,
        "limit": limit,
        "include": include_digest,
        "logSamples": bool(args.log_samples),
        # recorded only when not hf (older outputs stay reusable): vLLM scores differ slightly from HF's
        **({"backend": args.backend, "tensorParallelSize": tensor_parallel(args)} if args.backend != "hf" else {}),
    }


def tensor_parallel(args: argparse.Namespace) -> int:
    """vLLM: each of the `workers` data-parallel replicas takes gpus / workers GPUs."""
    return max(1, (args.gpus or 1) // max(1, args.workers))


def backend_model_args(args: argparse.Namespace, model_args: dict[str, str], local_dir: str) -> dict[str, str]:
    """lmms-eval model_args naming the checkpoint (and, for vLLM, its parallelism) for the backend."""
    if args.backend == "hf":
        return {"pretrained": local_dir}
    return {"model": local_dir, "tensor_parallel_size": str(tensor_parallel(args)),
            "data_parallel_size": str(args.workers)}


def check_backend(args: argparse.Namespace, model_args: dict[str, str]) -> None:
    if args.backend == "hf":
        return
    taken = sorted(set(model_args) & set(lmms.VLLM_RESERVED))
    if taken:
        raise JobError(f"lmmsEval modelArgs: {', '.join(taken)} are set from spec.model, spec.gpus and "
                       "spec.parallelism with backend vllm")
    if not args.gpus or args.gpus % args.workers:
        raise JobError(f"backend vllm: gpus ({args.gpus}) must be a positive multiple of workers ({args.workers})")
    if args.lmms_eval_model != lmms.DEFAULT_MODEL["vllm"]:
        raise JobError(f"lmmsEval model: backend vllm evaluates with lmms-eval's vllm model, not {args.lmms_eval_model}")
    lmms.require_vllm()


def resolve_inputs(args: argparse.Namespace, plan: dict[str, Any] | None = None) -> EvalInputs:
    """All checks in the order the errors are reported; the cheap ones before lmms-eval is imported.

    `plan` (a data-parallel rank, `workers.py`): the model and include path its parent resolved,
    taken as they are instead of being copied and hashed once per rank."""
    installed = check_version(args.expected_version)
    model_args = parse_model_args(args.model_args)
    tasks = parse_tasks(args.tasks)
    limit = parse_limit(args.limit)
    if args.batch_size < 1:
        raise JobError(f"lmmsEval batchSize: {args.batch_size} must be >= 1")
    if args.workers < 1:
        raise JobError(f"parallelism workers: {args.workers} must be >= 1")
    args.lmms_eval_model = args.lmms_eval_model or lmms.DEFAULT_MODEL[args.backend]
    check_backend(args, model_args)
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    if plan is None:
        precheck_model(args.model_uri)  # a wrong URI fails before the slow lmms-eval task indexing
        include_dir, include_input = fetch_include_path(args.include_path, work_dir)
    else:
        include_dir, include_input = plan["include"]["dir"], plan["include"]["input"]
    log(f"lmms-eval {installed}: indexing tasks" + (f" (+ {include_dir})" if include_dir else ""))
    task_manager = lmms.index_tasks(tasks, include_dir, args.include_path, args.lmms_eval_model, args.verbosity)
    model_cls = lmms.model_class(args.lmms_eval_model, installed)

    if plan is None:
        model = resolve_model(args.model_uri, work_dir, expected_digest=args.model_digest, log=log)
    else:
        model = ResolvedModel(**plan["model"])
    log(f"model {model.uri}: {model.local_dir} digest {model.digest} ({model.files} files, {model.bytes} bytes)")
    device_extra = lmms.device_defaults(model_cls, model_args)
    if device_extra:
        log(f"no CUDA device: adding model args {lmms.format_model_args(device_extra)}")
    spec_args = {**model_args, **device_extra}
    return EvalInputs(
        lmms_eval_version=installed, lmms_eval_model=args.lmms_eval_model, model_class=model_cls, model=model,
        model_args={**backend_model_args(args, model_args, model.local_dir), **spec_args}, tasks=tasks, task_manager=task_manager,
        batch_size=args.batch_size, limit=limit, include_dir=include_dir, include_input=include_input,
        output_uri=args.output.rstrip("/"), work_dir=work_dir, verbosity=args.verbosity,
        log_samples=bool(args.log_samples),
        parameters=run_parameters(args, installed, model_cls, spec_args, tasks, limit,
                                  include_input["digest"] if include_input else None),
    )
