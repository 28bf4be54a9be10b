"""A phase's state under the checkpoint prefix: TRL trainer checkpoints (uploaded as the trainer
writes them, `latest.json` after), and the phase's final weights (`final/`, `phase.json` last).

    <checkpoint>/<phase>/checkpoint-<step>/   the trainer's checkpoint (weights, optimizer, scheduler, RNG, state)
    <checkpoint>/<phase>/latest.json          {"checkpoint": "checkpoint-<step>", "step": <step>}
    <checkpoint>/<phase>/final/               the phase's weights in the release format; phase.json last

A partial upload is never pointed to; older checkpoints beyond `keep` are removed after `latest`
moves. On start the first phase without `phase.json` resumes from its `latest` checkpoint.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

from vlmops_contract.layouts import rl as layout

from ..common import storage
from .common import log


def phase_uri(checkpoint: str, phase: str) -> str:
    return storage.join(checkpoint, phase)


def upload_dir(local: str, uri: str, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under `local` to `uri` (streamed, each atomically); returns {relative path: sha256}."""
    digests: dict[str, str] = {}
    for dirpath, _, files in os.walk(local):
        for fn in sorted(files):
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, local).replace(os.sep, "/")
            if rel in skip or fn.startswith("."):
                continue
            h = hashlib.sha256()
            with open(path, "rb") as src, storage.atomic_open(storage.join(uri, rel), "wb") as dst:
                while chunk := src.read(8 << 20):
                    h.update(chunk)
                    dst.write(chunk)
            digests[rel] = "sha256:" + h.hexdigest()
    return dict(sorted(digests.items()))


def download_dir(uri: str, local: str) -> str:
    from ..evaluate.model import copy_to_local

    if os.path.isdir(local):
        shutil.rmtree(local)
    copy_to_local(uri, local, log=log, label="checkpoint uri")
    return local


def latest(checkpoint: str, phase: str) -> dict[str, Any] | None:
    uri = storage.join(phase_uri(checkpoint, phase), layout.LATEST)
    return storage.read_json(uri) if storage.exists(uri) else None


def finished(checkpoint: str, phase: str) -> dict[str, Any] | None:
    """The phase's `phase.json` when its final weights are committed."""
    uri = storage.join(phase_uri(checkpoint, phase), layout.FINAL, layout.PHASE_DONE)
    return storage.read_json(uri) if storage.exists(uri) else None


def final_uri(checkpoint: str, phase: str) -> str:
    return storage.join(phase_uri(checkpoint, phase), layout.FINAL)


def save(checkpoint: str, phase: str, local_ckpt: str, step: int, keep: int) -> str:
    """Upload a trainer checkpoint, point `latest` at it, prune what is beyond `keep`."""
    base = phase_uri(checkpoint, phase)
    name = layout.checkpoint_name(step)
    target = storage.join(base, name)
    _remove(target)  # a partial upload of a killed attempt is never reused
    upload_dir(local_ckpt, target)
    storage.write_json_atomic(storage.join(base, layout.LATEST), {"checkpoint": name, "step": step})
    _prune(base, keep, step)
    return target


def commit_final(checkpoint: str, phase: str, local_final: str, done: dict[str, Any]) -> dict[str, str]:
    uri = final_uri(checkpoint, phase)
    _remove(uri)
    files = upload_dir(local_final, uri)
    storage.write_json_atomic(storage.join(uri, layout.PHASE_DONE), {**done, "files": files})
    return files


def _remove(uri: str) -> None:
    fs, path = storage.get_fs(uri)
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def _prune(base: str, keep: int, newest: int) -> None:
    fs, path = storage.get_fs(base)
    try:
        fs.invalidate_cache(path)
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return
    steps = sorted(int(n.split("-", 1)[1]) for n in names if n.startswith("checkpoint-") and n[11:].isdigit())
    for s in [s for s in steps if s <= newest][:-keep] if keep > 0 else []:
        _remove(storage.join(base, layout.checkpoint_name(s)))
