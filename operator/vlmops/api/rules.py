"""Cross-field rules, written once: each becomes a CEL `x-kubernetes-validations` entry in the
CRD (enforced by the API server) and a pydantic check (enforced by `vlmops validate`, the local
runner and the operator). Keeping the pair together is what stops them from drifting."""
from __future__ import annotations

from typing import Any, Callable

Rule = tuple[str, str, Callable[[Any], bool]]  # (CEL, message, python check)


def _count_set(obj: Any, fields: list[str]) -> int:
    return sum(getattr(obj, f) is not None for f in fields)


def exactly_one(*wire_names: str) -> tuple[str, str, Callable[[Any], bool]]:
    cel = " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in wire_names) + " == 1"
    msg = "exactly one of " + ", ".join(wire_names) + " must be set"
    py = [_snake(n) for n in wire_names]
    return cel, msg, lambda obj: _count_set(obj, py) == 1


def at_most_one(*wire_names: str) -> tuple[str, str, Callable[[Any], bool]]:
    cel = " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in wire_names) + " <= 1"
    msg = "at most one of " + ", ".join(wire_names) + " may be set"
    py = [_snake(n) for n in wire_names]
    return cel, msg, lambda obj: _count_set(obj, py) <= 1


def rule(cel: str, msg: str, check: Callable[[Any], bool]) -> tuple[str, str, Callable[[Any], bool]]:
    return cel, msg, check


def cel_validations(rules: tuple[Rule, ...]) -> list[dict[str, str]]:
    """The rules as a CRD schema's `x-kubernetes-validations`."""
    return [{"rule": c, "message": m} for c, m, _ in rules]


def check_rules(obj: Any, rules: tuple[tuple[str, str, Callable[[Any], bool]], ...]) -> None:
    failed = [m for _, m, check in rules if not check(obj)]
    if failed:
        raise ValueError("; ".join(failed))


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)
