"""What the RL job's steps share: logging, the policy input, shard markers, work dirs."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

from ..common.result import JobError


def log(msg: str | dict[str, Any]) -> None:
    """Human lines on stderr; JSON events (a dict) on stdout, one per line."""
    if isinstance(msg, dict):
        print(json.dumps(msg, sort_keys=True), flush=True)
    else:
        print(f"[rl] {msg}", file=sys.stderr, flush=True)


def fault(point: str) -> None:
    """Test hook: VLMOPS_RL_FAULT=<point> kills the process there (like a pod eviction)."""
    if os.environ.get("VLMOPS_RL_FAULT") == point:
        log(f"fault injected at {point}: exiting")
        sys.stdout.flush()
        os._exit(137)


def work_dir(given: str | None, output: str) -> str:
    """Local scratch, the same path for every process of the pod (torchrun ranks share it):
    --work-dir, else $VLMOPS_STAGING_DIR or the temp dir, keyed by the output."""
    import hashlib

    base = given or os.path.join(os.environ.get("VLMOPS_STAGING_DIR") or tempfile.gettempdir(),
                                 "vlmops-rl-" + hashlib.sha256(output.encode()).hexdigest()[:12])
    os.makedirs(base, exist_ok=True)
    return base


def resolve_policy(uri: str, digest: str | None, work: str):
    """The policy as a local HF directory with its lineage ({uri, digest[, identity]}): a stage's
    export is checked against the digest of the stage's manifest (the eval job's resolution)."""
    from ..evaluate.model import resolve_model

    m = resolve_model(uri, work, digest, log=lambda s: log(s))
    return m.local_dir, m.lineage()


def parse_list(value: str, what: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = tuple(x.strip() for x in value.split(",") if x.strip())
    bad = [x for x in items if x not in allowed]
    if not items or bad:
        raise JobError(f"{what}: {', '.join(bad) or '(none)'} not in {', '.join(allowed)}")
    return items
