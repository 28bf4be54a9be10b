"""The reconcile tests reuse the operator tests' example pipeline driver (tests/operator)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # fake_api
