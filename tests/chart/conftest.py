"""Chart test fixtures (helpers live in chart_helpers.py, importable by the test modules)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # chart_helpers, for the fixtures and test modules

from chart_helpers import ALL_ON, helm_fixture

helm = helm_fixture()


@pytest.fixture(scope="session")
def default_objs(helm):
    return helm.render()


@pytest.fixture(scope="session")
def all_objs(helm):
    return helm.render(ALL_ON)
