"""Generated chart files are in sync with their sources (crds/, the dashboard builder)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from chart_helpers import CHART, ROOT


@pytest.mark.parametrize("script", ["sync_crds.py", "build_dashboard.py"])
def test_generated_chart_files_are_fresh(script):
    r = subprocess.run([sys.executable, str(ROOT / "charts" / script), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_chart_crds_are_byte_identical_copies():
    src = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert src, "crds/ is empty"
    dst = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    assert dst == src
    for name in src:
        assert (CHART / "files" / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), name


def _crd(kind: str) -> str:
    return (f"kind: CustomResourceDefinition\nspec:\n  names: {{kind: {kind}}}\n"
            "  versions: [{name: v1alpha1}]\n")


def test_sync_crds_check_detects_drift_in_the_copies_and_in_chart_yaml(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "charts"))
    try:
        import sync_crds
    finally:
        sys.path.pop(0)
    src = tmp_path / "crds"
    dst = tmp_path / "chart"
    chart = tmp_path / "Chart.yaml"
    chart.write_text("name: x\nannotations:\n  artifacthub.io/crds: |\n    - kind: Old\n      version: v1\n")
    src.mkdir()
    (src / "a.yaml").write_text(_crd("Alpha"))
    monkeypatch.setattr(sync_crds, "SRC", src)
    monkeypatch.setattr(sync_crds, "DST", dst)
    monkeypatch.setattr(sync_crds, "CHART", chart)
    assert sync_crds.diff() == ["a.yaml", "Chart.yaml"]
    assert sync_crds.main(["--check"]) == 1
    assert sync_crds.main([]) == 0 and sync_crds.diff() == []
    assert chart.read_text().endswith("artifacthub.io/crds: |\n    - kind: Alpha\n      version: v1alpha1\n")
    (src / "a.yaml").write_text(_crd("Alpha") + "# changed\n")
    (src / "b.yaml").write_text(_crd("Beta"))
    (dst / "stale.yaml").write_text("x: 1\n")
    assert sync_crds.diff() == ["a.yaml", "b.yaml", "stale.yaml", "Chart.yaml"]
    sync_crds.main([])
    assert sorted(p.name for p in dst.iterdir()) == ["a.yaml", "b.yaml"]
    assert "- kind: Beta" in chart.read_text()
