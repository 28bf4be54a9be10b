"""The normalised results as tasks finish (`results.json`), and the result line made from them."""
from __future__ import annotations

import copy
import json
import sys
import traceback
from typing import Any

from vlmops_contract.layouts.evaluate import RESULTS
from vlmops_contract.result import MAX_TERMINATION_BYTES

from . import lmms
from .log import log
from .model import ResolvedModel
from .normalize import normalize

MAX_ERROR_CHARS = 300


class EvalResults:
    """Results, per-task side table, skipped metrics and errors collected over the tasks."""

    def __init__(self, lmms_eval_version: str, model: dict[str, str], parameters: dict[str, Any]):
        self.lmms_eval_version = lmms_eval_version
        self.model = model  # the model: its files digest (, the identity of the stage that wrote it)
        self.parameters = parameters
        self.results: list[dict[str, Any]] = []
        self.tasks: dict[str, Any] = {}
        self.skipped: list[str] = []
        self.errors: list[dict[str, str]] = []
        self.samples = 0
        self.eval_seconds = 0.0

    @property
    def partial(self) -> bool:
        return bool(self.errors)

    def add_task(self, task: str, raw: dict[str, Any], seconds: float, reused: bool = False) -> None:
        """One task's lmms-eval results (what `simple_evaluate` returned, samples popped; or, `reused`,
        what an earlier run of the same evaluation committed)."""
        n = normalize(raw)
        self.results.extend(n["results"])
        self.tasks.update(n["tasks"])
        self.skipped.extend(n["skipped"])
        n_samples = sum(int(v.get("effective", 0)) for v in (raw.get("n-samples") or {}).values())
        self.samples += n_samples
        self.eval_seconds += seconds
        if reused:
            log(f"task {task}: {len(n['results'])} metrics, reused from an earlier run of this evaluation")
            return
        log(f"task {task}: {len(n['results'])} metrics in {seconds:.1f}s "
            f"({n_samples / max(seconds, 1e-9):.2f} samples/s)")

    def task_failed(self, task: str, error: BaseException) -> None:
        """Call while handling `error`: its traceback goes to the log."""
        traceback.print_exc(file=sys.stderr)
        e = lmms.unwrap(error)
        self.errors.append({"task": task, "error": f"{type(e).__name__}: {e}"[:MAX_ERROR_CHARS]})
        log(f"task {task} failed: {type(e).__name__}: {e}")

    def model_load_failed(self, tasks: list[str], error: BaseException) -> None:
        """Call while handling `error`: every task not run yet fails with it."""
        traceback.print_exc(file=sys.stderr)
        msg = f"model load failed: {type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        self.errors.extend({"task": t, "error": msg} for t in tasks)
        log(f"{msg}; not running {', '.join(tasks)}")

    def doc(self, partial: bool) -> dict[str, Any]:
        """The results.json document."""
        d = {
            "lmmsEvalVersion": self.lmms_eval_version,
            "model": self.model,
            "results": sorted(self.results, key=lambda r: (r["task"], r["metric"])),
            "partial": partial,
            "tasks": dict(sorted(self.tasks.items())),
            "parameters": self.parameters,
        }
        if self.skipped:
            d["skipped"] = sorted(self.skipped)
        if self.errors:
            d["errors"] = self.errors
        return d

    def throughput(self, seconds: float, model: ResolvedModel) -> dict[str, Any]:
        timing = {
            "seconds": round(seconds, 3),
            "evalSeconds": round(self.eval_seconds, 3),
            "samplesPerSecond": round(self.samples / self.eval_seconds, 4) if self.eval_seconds > 0 else 0.0,
        }
        if model.copied:
            timing["modelCopyBytesPerSecond"] = round(model.bytes / max(model.copy_seconds, 1e-9))
        return timing


def result_from_doc(doc: dict[str, Any], out_block: dict[str, str], timing: dict[str, Any],
                    model_uri: str | None = None) -> dict[str, Any]:
    """The result line's content for a results.json document (fitted to the termination message);
    `model_uri`: where the model was read (results.json itself names no locations)."""
    result = {
        "results": doc["results"],
        "lmmsEvalVersion": doc["lmmsEvalVersion"],
        "partial": doc["partial"],
        "model": {"uri": model_uri, "digest": doc["model"]["digest"]},
        "output": out_block,
        "throughput": timing,
    }
    if doc.get("errors"):
        result["errors"] = doc["errors"]
    return fit_result(result)


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
        r["resultsTruncated"] = {"shown": shown, "total": total, "full": f"output {RESULTS}"}
    while size(r) > limit and r.get("errors"):
        r["errors"] = r["errors"][:-1]
        r["errorsTruncated"] = True
    return r
