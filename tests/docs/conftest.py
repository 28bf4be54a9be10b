"""Docs test fixtures: this directory's helpers (md_read) and the chart tests' Helm renderer."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "chart"))

from chart_helpers import helm_fixture  # noqa: E402

helm = helm_fixture()
