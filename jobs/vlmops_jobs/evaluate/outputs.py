"""What `run` writes under `--output` (names: `vlmops_contract.layouts.evaluate`): uploads with their
digests, the commit (final results.json, then the manifest), and the reuse of a committed output."""
from __future__ import annotations

import os
from typing import Any

from vlmops_contract.layouts.evaluate import MANIFEST, RAW_DIR, RAW_RESULTS, RESULTS, TASK_DONE, raw_task_dir

from ..common import lineage, storage
from .inputs import EvalInputs
from .model import file_digests
from .results import EvalResults

KIND = "EvalSuite"
STEP = "run"


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

    def commit_task(self, task: str, inputs: EvalInputs, seconds: float) -> None:
        """The task's marker, after its files: what it was evaluated with and what it wrote."""
        prefix = raw_task_dir(task) + "/"
        files = {k[len(prefix):]: v for k, v in self.files.items() if k.startswith(prefix)}
        self.put_json(prefix + TASK_DONE, {"task": task, "parameters": inputs.parameters,
                                           "model": inputs.model.lineage().get("digest"),
                                           "seconds": round(seconds, 3), "files": files})

    def committed_task(self, task: str, inputs: EvalInputs) -> tuple[dict[str, Any], float] | None:
        """(lmms-eval's raw results, seconds) of a task a previous run committed with the same parameters
        and model, its files still as recorded (their digests are taken into this run's manifest);
        None when the task has to be evaluated."""
        prefix = raw_task_dir(task) + "/"
        try:
            marker = storage.read_json(storage.join(self.uri, prefix + TASK_DONE))
        except Exception:
            return None
        if marker.get("parameters") != inputs.parameters or marker.get("model") != inputs.model.lineage().get("digest"):
            return None
        files = marker.get("files") or {}
        try:
            if any(storage.sha256_uri(storage.join(self.uri, prefix + rel)) != d for rel, d in files.items()):
                return None
            raw = storage.read_json(storage.join(self.uri, prefix + RAW_RESULTS))
        except Exception:
            return None
        self.files.update({prefix + rel: d for rel, d in files.items()})
        self.files[prefix + TASK_DONE] = storage.sha256_uri(storage.join(self.uri, prefix + TASK_DONE))
        return raw, float(marker.get("seconds") or 0.0)

    def put_progress(self, collected: EvalResults) -> None:
        """results.json so far, marked partial: only the manifest commits it."""
        self.put_json(RESULTS, collected.doc(partial=True))


def commit(out: Output, inputs: EvalInputs, collected: EvalResults,
           workers: int = 1) -> tuple[dict[str, Any], dict[str, str]]:
    """The final results.json, then the manifest last; returns (results.json document, `status.output` block).
    The number of data-parallel `workers` is a statistic, not a parameter: the scores do not depend on it."""
    final = collected.doc(partial=collected.partial)
    out.put_json(RESULTS, final)
    lineage_inputs: dict[str, Any] = {"model": inputs.model.lineage()}
    if inputs.include_input:
        lineage_inputs["includePath"] = inputs.include_input
    stats = {
        "partial": collected.partial,
        "results": len(final["results"]),
        "tasks": len(inputs.tasks),
        "tasksFailed": len({e["task"] for e in collected.errors}),
        "samples": collected.samples,
        "lmmsEvalVersion": inputs.lmms_eval_version,
        "workers": workers,
    }
    # identity: the normalised results.json; lmms-eval's own output (dates, timings, paths) is kept
    # beside it with digests, outside identity
    raw = {k: v for k, v in out.files.items() if k.startswith(RAW_DIR + "/")}
    files = {k: v for k, v in out.files.items() if k not in raw}
    locations = {"model": inputs.model.uri, "includePath": (inputs.include_input or {}).get("uri")}
    manifest = lineage.build_manifest(kind=KIND, step=STEP, inputs=lineage_inputs, parameters=inputs.parameters,
                                      files=files, stats=stats, locations=locations, raw_files=raw)
    return final, lineage.commit_manifest(inputs.output_uri, manifest)


def committed_results(inputs: EvalInputs) -> tuple[dict[str, Any], dict[str, str]] | None:
    """Idempotent retry: a complete (non-partial) output for the same parameters and model digest,
    as (results.json document, `status.output` block); None when the job has to evaluate."""
    found = _reusable_results(inputs.output_uri, inputs.parameters, inputs.model.lineage())
    if found is None:
        return None
    doc, manifest = found
    manifest_uri = storage.join(inputs.output_uri, MANIFEST)
    return doc, {"uri": inputs.output_uri, "manifest": manifest_uri, "digest": storage.sha256_uri(manifest_uri),
                 "identity": manifest.get("identity")}


def _reusable_results(output_uri: str, parameters: dict[str, Any],
                      model_lineage: dict[str, Any]) -> tuple[dict, dict] | None:
    """(results.json document, manifest) of a complete output for these parameters and model."""
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
    return doc, manifest
