"""Training progress from object storage (`<output>/progress.json`, written by rank 0).

The operator reads it on a timer while a stage runs and mirrors it into `status.progress` and
`status.checkpoint` (the PyTorchJob itself carries no step counts). Storage access is optional:
with no credentials the read fails quietly and only the job's final result fills status.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from vlmops_contract.layouts import join, rl, train
from vlmops_contract.layouts.train import PROGRESS

# what a training stage and an RL stage report (each document holds only its own kind's fields)
PROGRESS_FIELDS = tuple(dict.fromkeys(train.PROGRESS_FIELDS + rl.PROGRESS_FIELDS))
from vlmops_contract.storage_env import fsspec_options

log = logging.getLogger("vlmops.progress")


def read(output_uri: str) -> dict[str, Any] | None:
    import fsspec

    uri = join(output_uri, PROGRESS)
    try:
        with fsspec.open(uri, "rb", **fsspec_options(uri)) as f:
            return json.load(f)
    except Exception as e:  # missing yet, no credentials, network: all mean "nothing new"
        log.debug("no progress at %s: %s", uri, e)
        return None


def status_patch(doc: dict[str, Any], status: dict[str, Any]) -> dict[str, Any] | None:
    """The status fields to update from a progress document, or None when nothing changed or the
    document is older than what status already has (never move progress backwards)."""
    progress = {k: doc[k] for k in PROGRESS_FIELDS if doc.get(k) is not None}
    old = status.get("progress") or {}
    if not progress or (old.get("step") or 0) > (progress.get("step") or 0):
        return None
    patch: dict[str, Any] = {}
    if progress != {k: old.get(k) for k in progress}:
        patch["progress"] = progress
    ck = doc.get("checkpoint") or {}
    if ck.get("latest") and ck != (status.get("checkpoint") or {}):
        patch["checkpoint"] = {"latest": ck["latest"], "step": ck.get("step")}
    return patch or None
