"""JSON merge patch (RFC 7386): the one implementation the reconciler, the local runner's store and
the tests' API server share."""
from __future__ import annotations

import copy
from typing import Any


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch turning `old` into `new` (keys that disappear become null)."""
    patch: dict[str, Any] = {}
    for k in old.keys() - new.keys():
        patch[k] = None
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(old.get(k), dict):
            sub = diff(old[k], v)
            if sub:
                patch[k] = sub
        elif old.get(k) != v:
            patch[k] = v
    return patch


def apply(target: Any, patch: Any) -> Any:
    """`target` with `patch` applied (a copy; null removes a key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = apply(out.get(k), v)
    return out
