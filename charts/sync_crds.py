"""Copies the generated CRDs (crds/*.yaml, from `python -m vlmops crds`) into the chart, and lists their
kinds in Chart.yaml's `artifacthub.io/crds` annotation (the last annotation, written from the CRDs).

The chart's templates/crds.yaml renders every charts/vlmops/files/crds/*.yaml (adding Helm labels and
`helm.sh/resource-policy: keep`) when `crds.install` is true. The copies are byte-identical, so
`python charts/sync_crds.py --check` (run by tests/chart/test_crds_sync.py) fails whenever crds/
changed without re-running this script.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "crds"
DST = ROOT / "charts" / "vlmops" / "files" / "crds"
CHART = ROOT / "charts" / "vlmops" / "Chart.yaml"
CRDS_ANNOTATION = "  artifacthub.io/crds: |\n"


def chart_yaml() -> str:
    """Chart.yaml with `artifacthub.io/crds` listing the kinds of crds/ (alphabetical)."""
    import yaml

    crds = [yaml.safe_load(p.read_text()) for p in sorted(SRC.glob("*.yaml"))]
    kinds = sorted((c["spec"]["names"]["kind"], c["spec"]["versions"][0]["name"]) for c in crds)
    text = CHART.read_text()
    head = text[: text.index(CRDS_ANNOTATION) + len(CRDS_ANNOTATION)]
    return head + "".join(f"    - kind: {k}\n      version: {v}\n" for k, v in kinds)


def diff() -> list[str]:
    """Names that differ between crds/ and the chart copy (missing, extra or changed), and Chart.yaml."""
    src = {p.name: p.read_bytes() for p in sorted(SRC.glob("*.yaml"))}
    dst = {p.name: p.read_bytes() for p in sorted(DST.glob("*.yaml"))} if DST.exists() else {}
    changed = sorted(n for n in set(src) | set(dst) if src.get(n) != dst.get(n))
    return changed + (["Chart.yaml"] if CHART.read_text() != chart_yaml() else [])


def sync() -> list[str]:
    changed = diff()
    DST.mkdir(parents=True, exist_ok=True)
    if "Chart.yaml" in changed:
        CHART.write_text(chart_yaml())
    for name in (n for n in changed if n != "Chart.yaml"):
        src, dst = SRC / name, DST / name
        if src.exists():
            dst.write_bytes(src.read_bytes())
        else:
            dst.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if the chart copy drifted from crds/")
    args = ap.parse_args(argv)
    if args.check:
        bad = diff()
        if bad:
            print("chart CRDs differ from crds/: " + ", ".join(bad) + " (run python charts/sync_crds.py)",
                  file=sys.stderr)
            return 1
        return 0
    for name in sync():
        print(f"synced {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
