"""docs/api.md is generated from the API types (vlmops.apidocs); the committed file must match, and the
generator must cover every field and rule of the types without knowing them."""
from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel, Field

from vlmops import apidocs
from vlmops.api.common import CommonSpec, CommonStatus, Model
from vlmops.api.kind import KindAPI
from vlmops.api.rules import at_most_one
from vlmops.kinds import KINDS

REPO = Path(__file__).resolve().parents[2]
API_MD = REPO / "docs" / "api.md"


def _sections(text: str) -> dict[str, str]:
    """`### Name` -> the text up to the next heading."""
    parts = re.split(r"^#{2,3} (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _rows(section: str) -> dict[str, list[str]]:
    """field -> its table cells (type, default, constraints, description)."""
    out = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if m:
            out[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return out


def _models(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    """Every model class reachable from `model` through field annotations (independent of the generator)."""
    if model.__name__ in seen:
        return seen
    seen[model.__name__] = model

    def walk(tp):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            _models(tp, seen)
        for arg in typing.get_args(tp):
            walk(arg)

    for f in model.model_fields.values():
        walk(f.annotation)
    return seen


def test_committed_api_md_matches_the_api_types():
    assert API_MD.read_text() == apidocs.render(), "docs/api.md drifted from the API types: run `make docs`"


def test_check_flag_fails_on_a_stale_copy(tmp_path, capsys):
    stale = tmp_path / "api.md"
    stale.write_text(apidocs.render().replace("| `", "| `x", 1))
    assert apidocs.main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert apidocs.main(["--out", str(stale)]) == 0
    assert apidocs.main(["--check", str(stale)]) == 0


def test_every_field_and_rule_of_every_kind_is_documented():
    sections = _sections(apidocs.render())
    for kind in KINDS.values():
        assert kind.kind in sections
        for root in (kind.spec, kind.status):
            for name, model in _models(root, {}).items():
                assert name in sections, f"{kind.kind}: type {name} has no section"
                rows = _rows(sections[name])
                wire = {f.alias or n for n, f in model.model_fields.items()}
                assert set(rows) == wire, f"{name}: documented {sorted(rows)} != fields {sorted(wire)}"
                for n, f in model.model_fields.items():
                    type_, default, _, description = rows[f.alias or n]
                    if f.is_required():
                        assert default == "**required**", (name, n)
                    if f.description:
                        assert " ".join(f.description.split()).replace("|", "\\|") in description, (name, n)
                for cel, message, _ in model.RULES:
                    assert f"- {message}" in sections[name] and f"`{cel}`" in sections[name], (name, message)


def test_a_new_kind_and_field_appear_without_touching_the_generator():
    """The generator names no field: a type it has never seen is documented with its default,
    constraints, description, nested type and rules."""

    class Knob(Model):
        """A knob."""

        RULES = (at_most_one("low", "high"),)
        low: int | None = Field(None, ge=0, description="Lower end.")
        high: int | None = None

    class WidgetSpec(CommonSpec):
        colour: typing.Literal["red", "blue"] = "red"
        knobs: list[Knob] = Field(default_factory=list, max_length=3)
        size: float = Field(..., gt=0, description="How big | really.")
        labels: dict[str, str] = Field(default_factory=dict)

    class WidgetStatus(CommonStatus):
        turned: int | None = None

    text = apidocs.render([KindAPI("Widget", "widgets", "wd", WidgetSpec, WidgetStatus, "Ready")])
    sections = _sections(text)
    spec = _rows(sections["WidgetSpec"])
    assert spec["colour"] == ["string", '`"red"`', 'one of `"red"`, `"blue"`', ""]
    assert spec["knobs"] == ["list[[Knob](#knob)]", "`[]`", "items <= 3", "A knob."]  # the type's doc
    assert spec["size"] == ["number", "**required**", "> 0", "How big \\| really."]
    assert spec["labels"][:2] == ["map[string, string]", "`{}`"]
    assert spec["storage"][0] == "[Storage](#storage)"
    knob = sections["Knob"]
    assert "A knob." in knob and _rows(knob)["low"] == ["integer", "—", ">= 0", "Lower end."]
    assert "- at most one of low, high may be set" in knob
    assert _rows(sections["WidgetStatus"])["turned"][0] == "integer"
    assert "| [Widget](#widget) | `wd` | `widgets` | condition `Ready` |" in text
    assert "Shared types" not in text  # one kind: every type is its own
