"""`vlmops render` of every example, with the chart values in golden/values/<name>.yaml (what a platform
sets: object storage, a prefix for relative locations), equals the recorded render (golden/).

A change to what the operator creates must be deliberate: regenerate with
`make vlmops ARGS="render -f examples/<name>/ --config tests/builders/golden/values/<name>.yaml" \
  > tests/builders/golden/<name>.yaml` and review the diff.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from vlmops.cli import main

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize("example", sorted(p.stem for p in GOLDEN.glob("*.yaml")))
def test_rendering_an_example_gives_the_recorded_children(example, capsys):
    assert main(["render", "-f", str(REPO / "examples" / example),
                 "--config", str(GOLDEN / "values" / f"{example}.yaml")]) == 0
    rendered = capsys.readouterr().out
    expected = (GOLDEN / f"{example}.yaml").read_text()
    assert rendered == expected, f"render of examples/{example} changed (see this module's docstring)"


def test_every_example_directory_has_a_recorded_render():
    examples = {p.name for p in (REPO / "examples").iterdir() if p.is_dir() and list(p.glob("*.yaml"))}
    assert examples == {p.stem for p in GOLDEN.glob("*.yaml")}
