"""Pinned requirements for one image, from pyproject.toml and requirements/lock.txt.

    python images/pins.py --extra data --out /tmp/pins
    pip install -c /tmp/pins/constraints.txt -r /tmp/pins/requirements.txt
    pip install --no-deps .

requirements.txt: the project's dependencies (+ the extra's), each pinned to its lock.txt version
(falling back to pyproject's specifier for anything not locked). constraints.txt: lock.txt minus
--exclude'd names, so transitive dependencies are pinned too. --exclude keeps what a base image
already provides (the NGC PyTorch image's torch and CUDA libraries). Standard library only: it runs
in the image's build stage before anything is installed.
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(req: str) -> str:
    return norm(re.split(r"[\s<>=!~\[;(@]", req.strip(), maxsplit=1)[0])


def read_lock(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith((" ", "#", "-")):
            continue
        out[req_name(line)] = line.split("#", 1)[0].strip()
    return out


def pins(extras: list[str], exclude: list[str], root: Path = ROOT) -> tuple[list[str], list[str]]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lock = read_lock(root / "requirements" / "lock.txt")
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]

    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatch(name, norm(p)) for p in exclude)

    reqs, seen = [], set()
    for d in deps:
        n = req_name(d)
        if n in seen or excluded(n):
            continue
        seen.add(n)
        reqs.append(lock.get(n, d))
    constraints = [line for n, line in sorted(lock.items()) if not excluded(n)]
    return reqs, constraints


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extra", action="append", default=[], help="pyproject optional-dependencies group")
    ap.add_argument("--exclude", default="", help="comma-separated names/globs provided by the base image")
    ap.add_argument("--exclude-from", action="append", default=[],
                    help="also exclude every name in this requirements/constraints file, if it exists "
                         "(the NGC image's /etc/pip/constraint.txt)")
    ap.add_argument("--add", action="append", default=[], help="extra requirement (e.g. megatron-core==X)")
    ap.add_argument("--out", required=True, help="directory for requirements.txt and constraints.txt")
    args = ap.parse_args(argv)
    exclude = [p for p in args.exclude.split(",") if p]
    for f in map(Path, args.exclude_from):
        if f.exists():
            exclude += [req_name(line) for line in f.read_text().splitlines()
                        if line.strip() and not line.lstrip().startswith(("#", "-"))]
    reqs, constraints = pins(args.extra, exclude)
    added = {req_name(a) for a in args.add}
    reqs = [r for r in reqs if req_name(r) not in added] + args.add
    constraints = [c for c in constraints if req_name(c) not in added]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "requirements.txt").write_text("\n".join(reqs) + "\n")
    (out / "constraints.txt").write_text("\n".join(constraints) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
