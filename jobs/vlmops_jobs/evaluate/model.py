"""Resolve the checkpoint an EvalSuite evaluates to a local Hugging Face directory, with a digest.

`--model-uri` is what the operator resolved from `spec.model`:
- `s3://...` (or any remote fsspec URI): a directory of an HF checkpoint; copied to local disk.
- `file://...` or a plain path: used in place (no copy).
- a Hugging Face repo id (`org/name`, optionally `org/name@revision`) that is not a path: looked
  up in the local HF cache only (`local_files_only`; nothing is downloaded).

The model digest is a tree digest: sha256 over the canonical JSON of {relative path: sha256 of
the file} for every file of the checkpoint, so it names the content, not where it was read from.
When the directory or its parent holds a vlmops `manifest.json` (a training stage's output, whose
HF export is `<output>/hf`: `vlmops_contract.layouts.train`), every file it lists is checked
against its recorded digest, and `--model-digest` may name either the tree digest or the
manifest's own digest (the stage's `status.output.digest`).
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from vlmops_contract.identity import tree_digest as contract_tree_digest
from vlmops_contract.layouts import MANIFEST
from vlmops_contract.layouts.train import HF_CONFIG

from ..common import storage
from ..common.result import JobError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?(@[\w.\-/]+)?$")
_SKIP_DIRS = {".cache", ".git", "__pycache__"}


@dataclass
class ResolvedModel:
    uri: str
    local_dir: str
    digest: str
    manifest_digest: str | None = None
    manifest_identity: str | None = None  # the training stage's identity, when its manifest lists these files
    files: int = 0
    bytes: int = 0
    copied: bool = False
    copy_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        """The model as an input: its files' digest and the identity of the stage that wrote it (both
        equal wherever it is stored), and where it was read (`uri`, outside identity)."""
        d: dict[str, Any] = {"uri": self.uri, "digest": self.digest}
        if self.manifest_identity:
            d["identity"] = self.manifest_identity
        return d


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _local_path(uri: str) -> str:
    return os.path.abspath(uri[len("file://"):] if uri.startswith("file://") else uri)


def copy_to_local(uri: str, dest: str, log=print, label: str = "model uri") -> tuple[int, int, float]:
    """Copy every file under a remote directory URI to `dest`; returns (files, bytes, seconds)."""
    fs, root = storage.get_fs(uri)
    root = root.rstrip("/")
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        found = {}
    files = {p: info for p, info in found.items() if info.get("type", "file") != "directory"}
    if not files:
        raise JobError(f"{label}: {uri} does not exist or is empty")
    os.makedirs(dest, exist_ok=True)
    t0 = time.monotonic()
    total = copied = 0
    for path, info in sorted(files.items()):
        rel = path[len(root):].lstrip("/")
        if not rel or any(part in _SKIP_DIRS or part.startswith(".tmp-") for part in rel.split("/")):
            continue
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = target + ".part"
        fs.get_file(path, tmp)
        os.replace(tmp, target)
        total += os.path.getsize(target)
        copied += 1
    dt = max(time.monotonic() - t0, 1e-9)
    log(f"copied {uri} -> {dest}: {copied} files, {total} bytes in {dt:.2f}s "
        f"({copied / dt:.1f} files/s, {total / dt:.0f} bytes/s)")
    return copied, total, dt


def _hash_file(path: str) -> str:
    return storage.sha256_uri(path)


def file_digests(local_dir: str) -> dict[str, str]:
    """{relative path: sha256} for every file under `local_dir` (symlinks followed: HF cache)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(local_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, local_dir).replace(os.sep, "/")
            out[rel] = _hash_file(full)
    return dict(sorted(out.items()))


def tree_digest(digests: dict[str, str]) -> str:
    return contract_tree_digest(digests)  # the same directory digest lineage and `vlmops lineage --verify` use


def _hf_cache_lookup(repo: str) -> str:
    repo_id, _, revision = repo.partition("@")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id=repo_id, revision=revision or None, local_files_only=True)
    except Exception as e:  # LocalEntryNotFoundError, HFValidationError, ...
        raise JobError(
            f"model uri: {repo} is neither a path nor a Hugging Face repo in the local cache "
            f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}; nothing is downloaded): "
            f"{type(e).__name__}"
        ) from None


def _read_manifest(uri: str) -> tuple[bytes, dict] | None:
    try:
        if not storage.exists(uri):
            return None
        data = storage.read_bytes(uri)
        doc = json.loads(data)
    except Exception:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        return None
    return data, doc


COPY_DIR = "model"  # under the work dir: the local copy of a remote checkpoint


def check_manifest(local_dir: str, digests: dict[str, str], uri: str | None = None) -> tuple[str, str | None] | None:
    """Verify the checkpoint against a vlmops manifest and return (that manifest's digest, its identity).

    Looked for in the checkpoint itself (`<dir>/manifest.json`, paths relative to it) and, when
    `uri` is given, one level up: a training stage writes `<output>/hf/...` with
    `<output>/manifest.json` listing them as `hf/<file>` — its digest is the stage's
    `status.output.digest`. Every listed file of the checkpoint must be present with its digest.
    """
    candidates: list[tuple[str, str]] = [(os.path.join(local_dir, MANIFEST), "")]
    if uri and "/" in uri.rstrip("/"):
        parent, name = uri.rstrip("/").rsplit("/", 1)
        if parent and name and parent not in ("s3:/", "file:/"):
            candidates.append((storage.join(parent, MANIFEST), name + "/"))
    for manifest_uri, prefix in candidates:
        found = _read_manifest(manifest_uri)
        if found is None:
            continue
        data, manifest = found
        listed = {k[len(prefix):]: v for k, v in manifest["files"].items() if k.startswith(prefix)}
        if not listed:
            continue
        for rel, expected in sorted(listed.items()):
            actual = digests.get(rel)
            if actual is None:
                raise JobError(f"model uri: file {rel} listed in {manifest_uri} is missing")
            if actual != expected:
                raise JobError(f"model digest: {rel} is {actual}, {manifest_uri} says {expected}")
        return storage.sha256_bytes(data), manifest.get("identity")
    return None


def _uri_kind(uri: str) -> str:
    """"remote" (copied to local disk), "local" (used in place) or "hub" (the local HF cache)."""
    if not uri:
        raise JobError("model uri: empty")
    if _is_remote(uri):
        return "remote"
    if uri.startswith("file://") or os.path.exists(uri) or uri.startswith(("/", ".")):
        return "local"
    if _REPO_ID.match(uri):
        return "hub"
    raise JobError(f"model uri: {uri} is not a URI, a path or a Hugging Face repo id")


def _local_dir(uri: str) -> str:
    local = _local_path(uri)
    if not os.path.isdir(local):
        raise JobError(f"model uri: {uri} does not exist or is not a directory")
    return local


def _require_hf_config(local: str, uri: str) -> None:
    if not os.path.isfile(os.path.join(local, HF_CONFIG)):
        raise JobError(f"model uri: {uri} has no {HF_CONFIG} (not a Hugging Face checkpoint directory)")


def precheck_model(uri: str) -> None:
    """Cheap existence check (no copy, no hashing) so a wrong URI fails before lmms-eval starts."""
    kind = _uri_kind(uri)
    if kind == "remote":
        try:
            ok = storage.exists(storage.join(uri, HF_CONFIG))
        except Exception as e:
            raise JobError(f"model uri: cannot read {uri} ({type(e).__name__}: {e})") from None
        if not ok:
            raise JobError(f"model uri: {uri} does not exist or has no {HF_CONFIG}")
    elif kind == "local":
        _require_hf_config(_local_dir(uri), uri)
    else:
        _hf_cache_lookup(uri)


def resolve_model(uri: str, work_dir: str, expected_digest: str | None = None, log=print) -> ResolvedModel:
    """The checkpoint as a local directory with its digests (a remote one is copied first)."""
    kind = _uri_kind(uri)
    copied = False
    n_files = n_bytes = 0
    seconds = 0.0
    base: str | None = None  # where a vlmops manifest may be found: none around a cache snapshot
    if kind == "remote":
        local = os.path.join(work_dir, COPY_DIR)
        n_files, n_bytes, seconds = copy_to_local(uri, local, log=log)
        copied, base = True, uri
    elif kind == "local":
        local = base = _local_dir(uri)
    else:
        local = _hf_cache_lookup(uri)
    _require_hf_config(local, uri)
    digests = file_digests(local)
    digest = tree_digest(digests)
    checked = check_manifest(local, digests, base)
    manifest_digest, manifest_identity = checked if checked else (None, None)
    if expected_digest and expected_digest not in {digest, manifest_digest, manifest_identity}:
        got = digest if not manifest_digest else f"{digest} (tree) / {manifest_digest} (manifest)"
        raise JobError(f"model digest: expected {expected_digest}, checkpoint at {uri} has {got}")
    if not copied:
        n_files = len(digests)
        n_bytes = sum(os.path.getsize(os.path.join(local, p)) for p in digests)
    return ResolvedModel(uri=uri, local_dir=local, digest=digest, manifest_digest=manifest_digest,
                         manifest_identity=manifest_identity,
                         files=n_files, bytes=n_bytes, copied=copied, copy_seconds=seconds)
