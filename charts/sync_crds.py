"""Copies the generated CRDs (crds/*.yaml, from `python -m vlmops crds`) into the chart.

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


def diff() -> list[str]:
    """Names that differ between crds/ and the chart copy (missing, extra or changed)."""
    src = {p.name: p.read_bytes() for p in sorted(SRC.glob("*.yaml"))}
    dst = {p.name: p.read_bytes() for p in sorted(DST.glob("*.yaml"))} if DST.exists() else {}
    return sorted(n for n in set(src) | set(dst) if src.get(n) != dst.get(n))


def sync() -> list[str]:
    changed = diff()
    DST.mkdir(parents=True, exist_ok=True)
    for name in changed:
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
