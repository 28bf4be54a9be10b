"""Everything that touches lmms-eval (the library, pinned); it is imported inside the functions, so
importing this module stays cheap (`--help`, flag parsing, the contract tests)."""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from vlmops_contract.layouts.evaluate import RAW_RESULTS, RAW_SAMPLES

from ..common.result import JobError
from .log import log

if TYPE_CHECKING:
    from .inputs import EvalInputs


DEFAULT_MODEL = {"hf": "llava_onevision1_5", "vllm": "vllm"}  # lmms-eval model name per backend
VLLM_RESERVED = ("model", "tensor_parallel_size", "data_parallel_size")  # set from the spec, not modelArgs


def require_vllm() -> None:
    try:
        version("vllm")
    except PackageNotFoundError:
        raise JobError("backend vllm: vllm is not installed in this image (EvalSuites with backend vllm run "
                       "on the eval-vllm image: images/eval/Dockerfile built with VLLM_VERSION)") from None


def installed_version() -> str:
    try:
        return version("lmms-eval")
    except PackageNotFoundError:
        raise JobError("lmmsEval version: lmms-eval is not installed in this image") from None


def format_model_args(args: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in args.items())


# ---------------------------------------------------------------- input checks


def index_tasks(tasks: list[str], include_dir: str | None, include_uri: str | None,
                model_name: str, verbosity: str):
    """lmms-eval's TaskManager over the built-in tasks (+ the include directory); every task must exist."""
    from lmms_eval.tasks import TaskManager

    task_manager = TaskManager(verbosity, include_path=include_dir, model_name=model_name)
    matched = set(task_manager.match_tasks(tasks))
    missing = [t for t in tasks if t not in matched]
    if missing:
        where = f" (built-in tasks + {include_uri})" if include_uri else " (built-in tasks)"
        raise JobError(f"lmmsEval tasks: unknown task {', '.join(missing)}{where}")
    return task_manager


def model_class(name: str, installed: str) -> type:
    from lmms_eval import models

    try:
        return models.get_model(name)
    except Exception as e:
        raise JobError(f"lmmsEval model: {name} is not an lmms-eval {installed} model ({type(e).__name__})") from None


def _init_parameters(model_cls: type) -> Any:
    return inspect.signature(model_cls.__init__).parameters


def device_defaults(model_cls: type, model_args: dict[str, str]) -> dict[str, str]:
    """Without CUDA, point models that take device/device_map at the CPU unless the spec did."""
    try:
        import torch

        if torch.cuda.is_available():
            return {}
        params = _init_parameters(model_cls)
    except Exception:
        return {}
    return {key: "cpu" for key in ("device", "device_map") if key in params and key not in model_args}


def model_defaults(model_cls: type) -> dict[str, Any]:
    """The model class's own defaults for plain-valued arguments (e.g. llava_onevision1_5's
    max_pixels): recorded so a default that changes between lmms-eval versions shows up."""
    try:
        params = _init_parameters(model_cls)
    except (TypeError, ValueError):
        return {}
    out = {}
    for name, p in params.items():
        if name in ("self", "pretrained") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is p.empty or not isinstance(p.default, (str, int, float, bool, type(None))):
            continue
        out[name] = p.default
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- evaluation


def load_model(inputs: EvalInputs):
    """A fresh model instance: lmms-eval's evaluate() ends with lm.clean(), which deletes the
    model's modules, so each task gets its own (what the lmms-eval CLI does once per run)."""
    t0 = time.monotonic()
    lm = inputs.model_class.create_from_arg_string(
        format_model_args(inputs.model_args), {"batch_size": inputs.batch_size, "max_batch_size": None, "device": None}
    )
    log(f"loaded {inputs.lmms_eval_model} in {time.monotonic() - t0:.1f}s")
    return lm


def _cli_args(**overrides: Any) -> argparse.Namespace:
    """lmms-eval's own CLI defaults (task aggregations read e.g. `args.output_path`)."""
    from lmms_eval import __main__ as lmain

    saved = sys.argv
    try:
        sys.argv = ["lmms-eval"]
        _, ns = lmain.parse_eval_args()
    except SystemExit:  # pragma: no cover - parser changed shape
        ns = argparse.Namespace()
    finally:
        sys.argv = saved
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


def evaluate_task(inputs: EvalInputs, lm: Any, task: str, task_dir: str) -> tuple[dict[str, Any] | None, float]:
    """`simple_evaluate` on one task, lmms-eval's files going to `task_dir`; (raw results, seconds).

    Under torchrun (`run --workers N`) every rank takes its share of the documents and rank 0
    alone gets the gathered results: the other ranks get (None, seconds)."""
    from lmms_eval import evaluator

    world = int(os.environ.get("WORLD_SIZE", "1"))
    # torchrun: the evaluator's own collectives (gloo on CPU; the model's group on GPU). The
    # accelerate path needs an Accelerator in distributed mode, which lmms-eval models on CPU skip.
    backend = {"distributed_executor_backend": "torchrun"} if world > 1 else {}

    os.makedirs(task_dir, exist_ok=True)
    common = dict(model_args=format_model_args(inputs.model_args), batch_size=inputs.batch_size,
                  limit=inputs.limit, log_samples=inputs.log_samples, verbosity=inputs.verbosity)
    cli_args = _cli_args(model=inputs.lmms_eval_model, tasks=task, include_path=inputs.include_dir,
                         output_path=task_dir, **common)
    t0 = time.monotonic()
    cwd = os.getcwd()
    try:
        if inputs.include_dir:
            os.chdir(inputs.include_dir)  # relative data paths in custom task YAMLs
        raw = evaluator.simple_evaluate(model=lm, tasks=[task], task_manager=inputs.task_manager,
                                        cli_args=cli_args, **backend, **common)
    finally:
        os.chdir(cwd)
    if raw is None and int(os.environ.get("RANK", "0")) == 0:
        raise RuntimeError("lmms-eval returned no results")
    return raw, time.monotonic() - t0


def unwrap(e: BaseException) -> BaseException:
    """lmms-eval retries some task hooks with tenacity: report the underlying error."""
    for _ in range(5):
        last = getattr(e, "last_attempt", None)
        inner = last.exception() if last is not None and hasattr(last, "exception") else None
        if inner is None:
            break
        e = inner
    return e


def _dumps(obj: Any, **kw: Any) -> str:
    from lmms_eval.utils import handle_non_serializable

    return json.dumps(obj, default=handle_non_serializable, ensure_ascii=False, **kw)


def write_raw_output(raw: dict[str, Any], task_dir: str) -> None:
    """lmms-eval's results (samples popped from `raw`) and its samples as JSONL, into `task_dir`."""
    samples = raw.pop("samples", None)
    with open(os.path.join(task_dir, RAW_RESULTS), "w") as f:
        f.write(_dumps(raw, indent=2, sort_keys=True) + "\n")
    if samples:
        with open(os.path.join(task_dir, RAW_SAMPLES), "w") as f:
            for name, rows in sorted(samples.items()):
                # document order, whatever the number of data-parallel ranks that produced them
                for row in sorted(rows, key=lambda r: (r.get("doc_id") is None, r.get("doc_id") or 0)):
                    f.write(_dumps({"task": name, **row}, sort_keys=True) + "\n")
