"""Human-readable validation errors with field paths as written in the CR."""
from __future__ import annotations

from pydantic import ValidationError


def format_validation_error(err: ValidationError) -> str:
    """One `spec.path: message` per problem, joined by '; ' (camelCase paths, as in the YAML)."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in ("spec", *e["loc"]))
        # One model validator may report several broken rules, joined by "; " (rules.check_rules).
        for msg in e["msg"].removeprefix("Value error, ").split("; "):
            # rules shared with the jobs name their own field (`spec.batch.global: ...`)
            lines.append(msg if msg.startswith(f"{path}.") or msg.startswith(f"{path}:") else f"{path}: {msg}")
    return "; ".join(lines)
