"""Wall time of `vlmops` commands, best of N fresh interpreters, against baselines measured in the
same run: a bare interpreter, and the imports the commands used to pay for (the whole `kubernetes`
package, `kubeflow.training`). Not run by tests; prints a markdown table.

    PYTHONPATH=operator:jobs python benchmarks/cli_startup.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "examples", "llava-ov-1.5")
COMMANDS = [
    ["--help"], ["render", "--help"], ["eval", "compare", "--help"],
    ["render", "-f", RECIPE], ["validate", "-f", RECIPE], ["crds", "--check"],
    ["status", "--workdir", os.path.join(ROOT, ".no-such-workdir")],
]
BASELINES = {"python -c pass": "pass", "import kubernetes": "import kubernetes",
             "import kubeflow.training": "import kubeflow.training"}


def best_of(argv: list[str], repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "operator"), os.path.join(ROOT, "jobs")])}
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], capture_output=True, cwd=ROOT, env=env)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    base = {name: best_of(["-c", code], args.repeat) for name, code in BASELINES.items()}
    interpreter = base["python -c pass"]
    print(f"| what | best of {args.repeat} (s) | x bare interpreter |\n|---|---|---|")
    for name, seconds in base.items():
        print(f"| `{name}` (baseline) | {seconds:.2f} | {seconds / interpreter:.1f} |")
    for cmd in COMMANDS:
        seconds = best_of(["-m", "vlmops", *cmd], args.repeat)
        shown = " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in cmd)
        print(f"| `vlmops {shown}` | {seconds:.2f} | {seconds / interpreter:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
