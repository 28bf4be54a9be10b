#!/usr/bin/env bash
# Prints the path of a virtualenv holding every pinned dependency, creating it if needed.
# Venvs live outside the clone, keyed by a hash of the requirement files and the Python
# version, so a clean clone reuses the multi-GB torch/lmms-eval install instead of
# downloading it again. The project itself is put on sys.path (PYTHONPATH / pytest
# `pythonpath`), never installed into the shared venv.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
py="${VLMOPS_PYTHON:-}"
if [ -z "$py" ]; then
  # pyenv's shim answers `command -v` even when 3.12 is not selected: check that it runs.
  for cand in "$HOME"/.pyenv/versions/3.12.*/bin/python3.12 python3.12; do
    if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      py="$(command -v "$cand")"; break
    fi
  done
fi
[ -n "$py" ] || { echo "venv.sh: Python 3.12 not found (set VLMOPS_PYTHON)" >&2; exit 1; }
reqs=("$here/requirements/lock.txt")
[ -f "${reqs[0]}" ] || reqs=("$here"/requirements/base.txt "$here"/requirements/ml.txt "$here"/requirements/test.txt)
key="$( { "$py" -V 2>&1; cat "${reqs[@]}"; } | sha256sum | cut -c1-16)"
root="${VLMOPS_VENV_ROOT:-$HOME/.cache/vlmops/venvs}"
venv="$root/$key"
mkdir -p "$root"
exec 9>"$venv.lock"
flock 9   # one builder at a time; others wait and then reuse it
if [ ! -f "$venv/.complete" ]; then
  echo "venv.sh: building $venv (first run downloads torch and lmms-eval; later runs reuse it)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  args=()
  for r in "${reqs[@]}"; do args+=(-r "$r"); done
  # uv resolves and installs the lock in parallel; pip's resolver backtracks for many minutes here.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check 'uv==0.11.*' >&2 2>/dev/null \
    || "$venv/bin/python" -m pip install -q uv >&2
  "$venv/bin/uv" pip install -q --python "$venv/bin/python" "${args[@]}" >&2
  touch "$venv/.complete"   # written last: a half-built venv is never reused
fi
echo "$venv"
