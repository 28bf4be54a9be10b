"""`python -m vlmops_jobs.evaluate run`: lmms-eval (the library, pinned) against one checkpoint.

Steps:
1. Check the installed lmms-eval version against `--expected-version` (spec.lmmsEval.version).
2. Fetch `--include-path` (custom task directories) to local disk; check every task name and the
   lmms-eval model name exist. 3. Resolve the checkpoint (`model.resolve_model`: copy, digest,
   verify). All of that is input checking: on failure, exit 2 with one `error:` line, nothing
   written.
4. Load the model once, then run `lmms_eval.evaluator.simple_evaluate` once per task so that one
   task's crash keeps the other tasks' results. After each task its raw lmms-eval output
   (results JSON without samples, samples JSONL, any submission files) is uploaded to
   `<output>/lmms-eval/<task>/` and the normalised `<output>/results.json` is rewritten.
5. `manifest.json` last, then the result line. If any task failed (or the model failed to
   load), the results written so far are kept with `"partial": true` and an `errors` list, the
   result line is still printed (and written to the termination log), and the job exits 1.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import sys
import tempfile
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..common import lineage, storage
from vlmops_contract.result import MAX_TERMINATION_BYTES

from ..common.result import JobError, emit_result
from . import normalize as norm
from .model import copy_to_local, file_digests, precheck_model, resolve_model, tree_digest

KIND = "EvalSuite"
STEP = "run"
RESULTS = "results.json"
RAW_DIR = "lmms-eval"
MAX_ERROR_CHARS = 300


class EvalFailed(Exception):
    """Evaluation ran but not every task produced results: partial output written, exit 1."""


def log(msg: str) -> None:
    # stderr: stdout's last line is reserved for the result (lmms-eval also logs to stdout).
    print(f"[vlmops-eval] {msg}", file=sys.stderr, flush=True)


def lmms_eval_version() -> str:
    try:
        return version("lmms-eval")
    except PackageNotFoundError:
        raise JobError("lmmsEval version: lmms-eval is not installed in this image") from None


def parse_model_args(text: str | None) -> dict[str, str]:
    """"k=v,k2=v2" -> dict (values kept as strings; lmms-eval converts them itself)."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise JobError(f"lmmsEval modelArgs: {part!r} is not key=value")
        out[key.strip()] = value.strip()
    if "pretrained" in out:
        raise JobError("lmmsEval modelArgs: pretrained is set from spec.model (--model-uri), not modelArgs")
    return out


def format_model_args(args: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in args.items())


def parse_tasks(text: str) -> list[str]:
    tasks: list[str] = []
    for t in (text or "").split(","):
        t = t.strip()
        if t and t not in tasks:
            tasks.append(t)
    if not tasks:
        raise JobError("lmmsEval tasks: empty")
    return tasks


def parse_limit(text: str | None) -> int | float | None:
    if text in (None, ""):
        return None
    try:
        v = float(text)
    except ValueError:
        raise JobError(f"lmmsEval limit: {text!r} is not a number") from None
    if v <= 0:
        raise JobError(f"lmmsEval limit: {text} must be > 0 (a count, or a fraction < 1)")
    return int(v) if v >= 1 and v == int(v) else v


def build_parser(sub: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = sub or argparse.ArgumentParser(prog="python -m vlmops_jobs.evaluate run")
    p.add_argument("--model-uri", required=True,
                   help="HF checkpoint directory: s3://, file://, a path, or a cached HF repo id")
    p.add_argument("--model-digest", default=None, help="expected sha256:... (tree or manifest digest)")
    p.add_argument("--lmms-eval-model", default="llava_onevision1_5", help="lmms-eval --model name")
    p.add_argument("--model-args", default="", help="lmms-eval model_args without pretrained: k=v,...")
    p.add_argument("--tasks", required=True, help="comma-separated lmms-eval task or group names")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--limit", default=None, help="examples per task (count, or a fraction < 1)")
    p.add_argument("--include-path", default=None, help="URI of a directory of custom task YAMLs")
    p.add_argument("--output", required=True, help="output URI (s3://, file://, path)")
    p.add_argument("--expected-version", default=None, help="pinned lmms-eval version, e.g. 0.7.3")
    p.add_argument("--work-dir", default=os.environ.get("VLMOPS_WORK_DIR"),
                   help="local scratch for the model copy and lmms-eval files (default: a temp dir)")
    p.add_argument("--verbosity", default="INFO", help="lmms-eval verbosity")
    p.add_argument("--no-log-samples", dest="log_samples", action="store_false",
                   help="do not write per-sample outputs")
    return p


# ---------------------------------------------------------------- lmms-eval glue (lazy imports)

def _lmms_cli_args(**overrides: Any) -> argparse.Namespace:
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


def _device_defaults(model_cls: type, model_args: dict[str, str]) -> dict[str, str]:
    """Without CUDA, point models that take device/device_map at the CPU unless the spec did."""
    try:
        import torch

        if torch.cuda.is_available():
            return {}
        params = inspect.signature(model_cls.__init__).parameters
    except Exception:
        return {}
    extra = {}
    for key in ("device", "device_map"):
        if key in params and key not in model_args:
            extra[key] = "cpu"
    return extra


def _unwrap(e: BaseException) -> BaseException:
    """lmms-eval retries some task hooks with tenacity: report the underlying error."""
    for _ in range(5):
        last = getattr(e, "last_attempt", None)
        inner = last.exception() if last is not None and hasattr(last, "exception") else None
        if inner is None:
            break
        e = inner
    return e


def _model_defaults(model_cls: type) -> dict[str, Any]:
    """The model class's own defaults for plain-valued arguments (e.g. llava_onevision1_5's
    max_pixels): recorded so a default that changes between lmms-eval versions shows up."""
    try:
        params = inspect.signature(model_cls.__init__).parameters
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


def _dumps(obj: Any, **kw: Any) -> str:
    from lmms_eval.utils import handle_non_serializable

    return json.dumps(obj, default=handle_non_serializable, ensure_ascii=False, **kw)


# ---------------------------------------------------------------- output helpers

class Output:
    """Uploads files under the output URI and remembers their digests for the manifest."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.files: dict[str, str] = {}

    def put_bytes(self, rel: str, data: bytes) -> None:
        self.files[rel] = storage.write_bytes_atomic(storage.join(self.uri, rel), data)

    def put_json(self, rel: str, obj: Any) -> None:
        self.files[rel] = storage.write_json_atomic(storage.join(self.uri, rel), obj)

    def put_tree(self, local_dir: str, prefix: str) -> None:
        for rel, digest in file_digests(local_dir).items():
            key = f"{prefix}/{rel}"
            if self.files.get(key) == digest:
                continue
            with open(os.path.join(local_dir, rel), "rb") as f:
                self.put_bytes(key, f.read())


def fit_result(result: dict[str, Any], limit: int = MAX_TERMINATION_BYTES) -> dict[str, Any]:
    """Shrink the result until its line fits the termination message (4 KiB)."""

    def size(r: dict[str, Any]) -> int:
        return len(json.dumps({"vlmopsResult": r}, sort_keys=True, separators=(",", ":")).encode())

    if size(result) <= limit:
        return result
    r = copy.deepcopy(result)
    total = len(r.get("results", []))
    errors = r.get("errors") or []
    if errors:
        r["errors"] = [dict(e, error=e.get("error", "")[:120]) for e in errors]
    shown = total
    while size(r) > limit and shown > 0:
        shown -= 1
        r["results"] = result["results"][:shown]
        r["resultsTruncated"] = {"shown": shown, "total": total, "full": "output results.json"}
    while size(r) > limit and r.get("errors"):
        r["errors"] = r["errors"][:-1]
        r["errorsTruncated"] = True
    return r


# ---------------------------------------------------------------- the job

def _reuse_previous(output_uri: str, parameters: dict[str, Any], model_lineage: dict[str, Any]) -> dict | None:
    """Idempotent retry: a complete (non-partial) output for the same inputs is reported again."""
    try:
        manifest = lineage.read_manifest(output_uri)
    except Exception:
        return None
    if not manifest or manifest.get("stats", {}).get("partial", True):
        return None
    if manifest.get("parameters") != parameters:
        return None
    if (manifest.get("inputs", {}).get("model") or {}).get("digest") != model_lineage.get("digest"):
        return None
    try:
        doc = storage.read_json(storage.join(output_uri, RESULTS))
    except Exception:
        return None
    if storage.sha256_bytes(storage.canonical_json(doc)) != manifest.get("files", {}).get(RESULTS):
        return None
    return doc


def run(argv: list[str] | None = None, ns: argparse.Namespace | None = None) -> dict[str, Any]:
    args = ns if ns is not None else build_parser().parse_args(argv)
    if args.work_dir:
        return _run(args)
    with tempfile.TemporaryDirectory(prefix="vlmops-eval-") as tmp:  # model copy and staging go away
        args.work_dir = tmp
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.monotonic()

    # 1. version pin
    installed = lmms_eval_version()
    if args.expected_version and args.expected_version != installed:
        raise JobError(f"lmmsEval version: pinned {args.expected_version}, this image has lmms-eval {installed}")

    model_args = parse_model_args(args.model_args)
    tasks = parse_tasks(args.tasks)
    limit = parse_limit(args.limit)
    if args.batch_size < 1:
        raise JobError(f"lmmsEval batchSize: {args.batch_size} must be >= 1")
    output_uri = args.output.rstrip("/")
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)

    precheck_model(args.model_uri)

    # 2. custom tasks + task names + model name
    include_local = None
    include_input = None
    if args.include_path:
        inc = args.include_path
        if "://" in inc and not inc.startswith("file://"):
            include_local = os.path.join(work_dir, "tasks")
            copy_to_local(inc, include_local, log=log, label="lmmsEval includePath")
        else:
            include_local = os.path.abspath(inc[len("file://"):] if inc.startswith("file://") else inc)
            if not os.path.isdir(include_local):
                raise JobError(f"lmmsEval includePath: {inc} does not exist or is not a directory")
        include_input = {"uri": inc, "digest": tree_digest(file_digests(include_local))}

    log(f"lmms-eval {installed}: indexing tasks" + (f" (+ {include_local})" if include_local else ""))
    from lmms_eval import evaluator, models
    from lmms_eval.tasks import TaskManager

    task_manager = TaskManager(args.verbosity, include_path=include_local, model_name=args.lmms_eval_model)
    matched = set(task_manager.match_tasks(tasks))
    missing = [t for t in tasks if t not in matched]
    if missing:
        where = f" (built-in tasks + {args.include_path})" if args.include_path else " (built-in tasks)"
        raise JobError(f"lmmsEval tasks: unknown task {', '.join(missing)}{where}")
    try:
        model_cls = models.get_model(args.lmms_eval_model)
    except Exception as e:
        raise JobError(f"lmmsEval model: {args.lmms_eval_model} is not an lmms-eval {installed} model ({type(e).__name__})") from None

    # 3. checkpoint
    model = resolve_model(args.model_uri, work_dir, expected_digest=args.model_digest, log=log)
    log(f"model {model.uri}: {model.local_dir} digest {model.digest} ({model.files} files, {model.bytes} bytes)")

    device_extra = _device_defaults(model_cls, model_args)
    if device_extra:
        log(f"no CUDA device: adding model args {format_model_args(device_extra)}")
    resolved_args = {"pretrained": model.local_dir, **model_args, **device_extra}
    parameters = {
        "lmmsEvalVersion": installed,
        "model": args.lmms_eval_model,
        "modelArgs": dict(sorted({**model_args, **device_extra}.items())),
        "modelClass": f"{model_cls.__module__}.{model_cls.__name__}",
        "modelDefaults": _model_defaults(model_cls),
        "tasks": tasks,
        "batchSize": args.batch_size,
        "limit": limit,
        "includePath": args.include_path,
        "logSamples": bool(args.log_samples),
    }
    model_doc = {"uri": model.uri, "digest": model.digest}
    if model.manifest_digest:
        model_doc["manifestDigest"] = model.manifest_digest

    previous = _reuse_previous(output_uri, parameters, model.lineage())
    if previous is not None:
        log(f"{output_uri} already holds complete results for these inputs: reporting them again")
        manifest_uri = storage.join(output_uri, lineage.MANIFEST)
        out_block = {"uri": output_uri, "manifest": manifest_uri, "digest": storage.sha256_uri(manifest_uri)}
        return _finish(previous, out_block, {"seconds": round(time.monotonic() - t_start, 3), "reused": True})

    # 4. evaluate, task by task
    out = Output(output_uri)
    staging = os.path.join(work_dir, "out")
    results: list[dict[str, Any]] = []
    task_info: dict[str, Any] = {}
    skipped: list[str] = []
    errors: list[dict[str, str]] = []
    samples_total = 0
    eval_seconds = 0.0

    def doc(partial: bool) -> dict[str, Any]:
        d = {
            "lmmsEvalVersion": installed,
            "model": model_doc,
            "results": sorted(results, key=lambda r: (r["task"], r["metric"])),
            "partial": partial,
            "tasks": dict(sorted(task_info.items())),
            "parameters": parameters,
        }
        if skipped:
            d["skipped"] = sorted(skipped)
        if errors:
            d["errors"] = errors
        return d

    def load_model():
        # lmms-eval's evaluate() ends with lm.clean(), which deletes the model's modules: a fresh
        # instance per task (what the lmms-eval CLI does once per run).
        t0 = time.monotonic()
        lm = model_cls.create_from_arg_string(
            format_model_args(resolved_args), {"batch_size": args.batch_size, "max_batch_size": None, "device": None}
        )
        log(f"loaded {args.lmms_eval_model} in {time.monotonic() - t0:.1f}s")
        return lm

    cwd = os.getcwd()
    for i, task in enumerate(tasks):
        try:
            lm = load_model()
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            msg = f"model load failed: {type(e).__name__}: {e}"[:MAX_ERROR_CHARS]
            errors.extend({"task": t, "error": msg} for t in tasks[i:])
            log(f"{msg}; not running {', '.join(tasks[i:])}")
            break
        task_dir = os.path.join(staging, RAW_DIR, task)
        os.makedirs(task_dir, exist_ok=True)
        cli_args = _lmms_cli_args(
            model=args.lmms_eval_model, model_args=format_model_args(resolved_args), tasks=task,
            batch_size=args.batch_size, limit=limit, include_path=include_local, output_path=task_dir,
            log_samples=bool(args.log_samples), verbosity=args.verbosity,
        )
        t_task = time.monotonic()
        try:
            if include_local:
                os.chdir(include_local)  # relative data paths in custom task YAMLs
            raw = evaluator.simple_evaluate(
                model=lm, model_args=format_model_args(resolved_args), tasks=[task],
                batch_size=args.batch_size, limit=limit, task_manager=task_manager,
                log_samples=bool(args.log_samples), verbosity=args.verbosity, cli_args=cli_args,
            )
            if raw is None:
                raise RuntimeError("lmms-eval returned no results")
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            e = _unwrap(e)
            errors.append({"task": task, "error": f"{type(e).__name__}: {e}"[:MAX_ERROR_CHARS]})
            log(f"task {task} failed: {type(e).__name__}: {e}")
            continue
        finally:
            os.chdir(cwd)
            del lm
        dt = time.monotonic() - t_task
        eval_seconds += dt
        samples = raw.pop("samples", None)
        with open(os.path.join(task_dir, "results.json"), "w") as f:
            f.write(_dumps(raw, indent=2, sort_keys=True) + "\n")
        if samples:
            with open(os.path.join(task_dir, "samples.jsonl"), "w") as f:
                for name, rows in sorted(samples.items()):
                    for row in rows:
                        f.write(_dumps({"task": name, **row}, sort_keys=True) + "\n")
        n = norm.normalize(raw)
        results.extend(n["results"])
        task_info.update(n["tasks"])
        skipped.extend(n["skipped"])
        n_samples = sum(int(v.get("effective", 0)) for v in (raw.get("n-samples") or {}).values())
        samples_total += n_samples
        log(f"task {task}: {len(n['results'])} metrics in {dt:.1f}s ({n_samples / max(dt, 1e-9):.2f} samples/s)")
        out.put_tree(task_dir, f"{RAW_DIR}/{task}")
        out.put_json(RESULTS, doc(partial=True))  # progress; only the manifest commits it

    # 5. commit: results.json, manifest last
    partial = bool(errors)
    final = doc(partial=partial)
    out.put_json(RESULTS, final)
    inputs: dict[str, Any] = {"model": model.lineage()}
    if include_input:
        inputs["includePath"] = include_input
    stats = {
        "partial": partial,
        "results": len(final["results"]),
        "tasks": len(tasks),
        "tasksFailed": len({e["task"] for e in errors}),
        "samples": samples_total,
        "lmmsEvalVersion": installed,
    }
    manifest = lineage.build_manifest(kind=KIND, step=STEP, inputs=inputs, parameters=parameters,
                                      files=out.files, stats=stats)
    out_block = lineage.commit_manifest(output_uri, manifest)
    timing = {
        "seconds": round(time.monotonic() - t_start, 3),
        "evalSeconds": round(eval_seconds, 3),
        "samplesPerSecond": round(samples_total / eval_seconds, 4) if eval_seconds > 0 else 0.0,
    }
    if model.copied:
        timing["modelCopyBytesPerSecond"] = round(model.bytes / max(model.copy_seconds, 1e-9))
    return _finish(final, out_block, timing)


def _finish(doc: dict[str, Any], out_block: dict[str, str], timing: dict[str, Any]) -> dict[str, Any]:
    result = {
        "results": doc["results"],
        "lmmsEvalVersion": doc["lmmsEvalVersion"],
        "partial": doc["partial"],
        "model": {"uri": doc["model"]["uri"], "digest": doc["model"]["digest"]},
        "output": out_block,
        "throughput": timing,
    }
    if doc.get("errors"):
        result["errors"] = doc["errors"]
    log(f"done: {len(doc['results'])} metrics, partial={doc['partial']}, {json.dumps(timing, sort_keys=True)}")
    emit_result(fit_result(result))
    if doc["partial"]:
        failed = ", ".join(sorted({e["task"] for e in doc.get("errors", [])}))
        raise EvalFailed(f"lmmsEval tasks: {failed} failed; partial results kept in {out_block['uri']}")
    return result
