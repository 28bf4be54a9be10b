"""What `run` evaluates (`EvalInputs`, built by `resolve.resolve_inputs`) and the parsing of its flags' values.

Every failure here is a `JobError`: one `error:` line, exit 2, nothing written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..common.result import JobError
from .log import log
from .model import ResolvedModel, copy_to_local, file_digests, tree_digest

INCLUDE_COPY = "tasks"  # under the work dir: the local copy of a remote --include-path


@dataclass
class EvalInputs:
    """What the evaluation runs on, all checked; `parameters` is what results.json and the manifest record."""

    lmms_eval_version: str
    lmms_eval_model: str
    model_class: type
    model: ResolvedModel
    model_args: dict[str, str]  # lmms-eval model_args: pretrained (the local checkpoint) first
    tasks: list[str]
    task_manager: Any
    batch_size: int
    limit: int | float | None
    include_dir: str | None  # local directory of custom tasks
    include_input: dict[str, str] | None  # its lineage: {"uri", "digest"}
    output_uri: str
    work_dir: str
    verbosity: str
    log_samples: bool
    parameters: dict[str, Any]


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


def fetch_include_path(uri: str | None, work_dir: str) -> tuple[str | None, dict[str, str] | None]:
    """(local directory, lineage) of the custom tasks; a remote URI is copied to the work dir first."""
    if not uri:
        return None, None
    if "://" in uri and not uri.startswith("file://"):
        local = os.path.join(work_dir, INCLUDE_COPY)
        copy_to_local(uri, local, log=log, label="lmmsEval includePath")
    else:
        local = os.path.abspath(uri[len("file://"):] if uri.startswith("file://") else uri)
        if not os.path.isdir(local):
            raise JobError(f"lmmsEval includePath: {uri} does not exist or is not a directory")
    return local, {"uri": uri, "digest": tree_digest(file_digests(local))}
