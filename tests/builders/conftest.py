from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test modules share helpers (test_child_manifests)

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
