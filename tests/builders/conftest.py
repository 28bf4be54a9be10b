from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "examples" / "llava-ov-1.5"


def load_recipe() -> list[dict]:
    docs = []
    for f in sorted(RECIPE.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


@pytest.fixture
def recipe() -> list[dict]:
    return load_recipe()
