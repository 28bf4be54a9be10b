"""Docs test fixtures: this directory's helpers (md_read) and the chart's Helm renderer (tests/chart)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "chart"))


@pytest.fixture(scope="session")
def helm():
    pytest.importorskip("helm_sdkpy")
    pytest.importorskip("kmock")
    from chart_helpers import Helm

    h = Helm()
    yield h
    h.close()
