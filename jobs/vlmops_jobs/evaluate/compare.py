"""Compare two evaluations side by side (deltas B-A), optionally against published reference numbers.

`python -m vlmops_jobs.evaluate compare A [B] [--reference llava-ov-1.5-8b] [--json]` prints a
table (or the rows as JSON) instead of a result line; bad input exits 2.

A and B may each be:
- an EvalSuite output URI/path (a directory holding `results.json`) or a `results.json` file,
- a raw lmms-eval results JSON (normalised on the fly),
- an EvalSuite object as JSON/YAML (`kubectl get evs NAME -o yaml`: `status.results` is used),
- a job log or termination message holding the `{"vlmopsResult": ...}` line,
- a reference name (`llava-ov-1.5-8b`, also spelled `ref:llava-ov-1.5-8b`).

The operator's CLI (`vlmops eval compare`) runs this step as a subprocess.
Deltas are B - A, and A - ref / B - ref; values are in lmms-eval's units for each metric.

`--tolerance X` (absolute, every metric) and `--tolerance task/metric=X` (one metric) mark each
row within or outside its tolerance: the compared delta is B - A, or A - ref without B. With
`--check` a row outside its tolerance, or a metric missing on one side, exits 1 (a CI gate:
"this run reproduces that one", "we are within 1 point of the release").
"""
from __future__ import annotations

import argparse
import json
import math
import os
from importlib import resources
from typing import Any, Iterable, Mapping

from vlmops_contract.layouts.evaluate import RESULTS
from vlmops_contract.result import parse_result
from vlmops_contract.thresholds import result_key

from ..common import storage
from ..common.cli import StepFailed
from ..common.result import JobError
from .normalize import normalize

REFERENCES_FILE = "references.json"  # package data


def references() -> dict[str, Any]:
    """The shipped reference numbers (package data), keyed by reference name."""
    text = resources.files(__package__).joinpath(REFERENCES_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def reference_results(name: str) -> list[dict[str, Any]]:
    refs = references()
    key = name[4:] if name.startswith("ref:") else name
    if key not in refs:
        raise JobError(f"reference: unknown {name!r} (known: {', '.join(sorted(refs))})")
    return [{"task": r["task"], "metric": r["metric"], "value": r["value"]} for r in refs[key]["results"]]


def _results_from_doc(doc: Any, source: str) -> list[dict[str, Any]]:
    if isinstance(doc, list):
        return [dict(r) for r in doc]
    if not isinstance(doc, Mapping):
        raise JobError(f"compare {source}: not a results document")
    if "vlmopsResult" in doc:
        return _results_from_doc(doc["vlmopsResult"], source)
    if isinstance(doc.get("status"), Mapping) and "results" in doc["status"]:  # an EvalSuite object
        return [dict(r) for r in doc["status"]["results"] or []]
    res = doc.get("results")
    if isinstance(res, list):  # normalised results.json / result line
        return [dict(r) for r in res]
    if isinstance(res, Mapping):  # raw lmms-eval output
        return normalize(doc)["results"]
    raise JobError(f"compare {source}: no results found (expected results.json, lmms-eval JSON or an EvalSuite)")


def load_results(source: str) -> list[dict[str, Any]]:
    """Results list from any of the accepted sources (see module docstring)."""
    key = source[4:] if source.startswith("ref:") else source
    if source.startswith("ref:") or (key in references() and not os.path.exists(source)):
        return reference_results(source)
    uri = source
    try:
        if not storage.exists(uri):
            raise JobError(f"compare {source}: not found")
        fs, path = storage.get_fs(uri)
        if fs.isdir(path):
            uri = storage.join(uri, RESULTS)
            if not storage.exists(uri):
                raise JobError(f"compare {source}: directory has no {RESULTS}")
        text = storage.read_bytes(uri).decode("utf-8")
    except JobError:
        raise
    except Exception as e:
        raise JobError(f"compare {source}: cannot read ({type(e).__name__}: {e})") from None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = parse_result(text)
        if doc is None:
            try:
                import yaml

                doc = yaml.safe_load(text)
            except Exception:
                doc = None
    if doc is None:
        raise JobError(f"compare {source}: neither JSON, YAML nor a job log with a result line")
    return _results_from_doc(doc, source)


def _index(results: Iterable[Mapping[str, Any]] | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for r in results or []:
        v = r.get("value")
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        out.setdefault(result_key(str(r["task"]), str(r["metric"])), float(v) if ok else None)
    return out


def _delta(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else x - y


def compare_rows(
    a: Iterable[Mapping[str, Any]],
    b: Iterable[Mapping[str, Any]] | None = None,
    reference: Iterable[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per task/metric present in any input, sorted: {"task","metric","a","b","delta",
    "ref","aVsRef","bVsRef"} (keys for absent inputs are left out; missing values are None)."""
    ia, ib, ir = _index(a), _index(b) if b is not None else None, _index(reference) if reference is not None else None
    keys = set(ia) | set(ib or {}) | set(ir or {})
    rows = []
    for key in sorted(keys, key=lambda k: tuple(k.split("/", 1))):
        task, metric = key.split("/", 1)
        row: dict[str, Any] = {"task": task, "metric": metric, "a": ia.get(key)}
        if ib is not None:
            row["b"] = ib.get(key)
            row["delta"] = _delta(row["b"], row["a"])
        if ir is not None:
            row["ref"] = ir.get(key)
            row["aVsRef"] = _delta(row["a"], row["ref"])
            if ib is not None:
                row["bVsRef"] = _delta(row["b"], row["ref"])
        rows.append(row)
    return rows


def parse_tolerances(values: list[str] | None) -> tuple[float | None, dict[str, float]]:
    """(default, {"task/metric": tolerance}) from `--tolerance` values."""
    default: float | None = None
    per: dict[str, float] = {}
    for v in values or []:
        key, sep, num = v.rpartition("=")
        try:
            x = float(num)
        except ValueError:
            raise JobError(f"tolerance: {v!r} is neither a number nor task/metric=number") from None
        if not math.isfinite(x) or x < 0:
            raise JobError(f"tolerance: {v!r} must be a finite number >= 0")
        if not sep:
            default = x
        elif "/" not in key:
            raise JobError(f"tolerance: {key!r} is not task/metric")
        else:
            per[key] = x
    return default, per


def apply_tolerances(rows: list[dict[str, Any]], default: float | None, per: Mapping[str, float]) -> list[str]:
    """Sets "tolerance" and "within" on every row that has one; returns the rows outside it, as lines."""
    outside = []
    for r in rows:
        key = result_key(r["task"], r["metric"])
        tol = per.get(key, default)
        if tol is None:
            continue
        delta = r["delta"] if "b" in r else r.get("aVsRef")
        r["tolerance"] = tol
        r["within"] = delta is not None and abs(delta) <= tol + 1e-12
        if not r["within"]:
            outside.append(f"{key}: " + ("missing on one side" if delta is None else f"{delta:+.4f} beyond ±{tol:g}"))
    unknown = sorted(set(per) - {result_key(r["task"], r["metric"]) for r in rows})
    if unknown:
        raise JobError(f"tolerance: {', '.join(unknown)} is in neither evaluation")
    return outside


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def format_table(rows: list[dict[str, Any]], labels: Mapping[str, str] | None = None) -> str:
    """Plain-text table; `labels` names the columns a/b/ref (defaults "A", "B", "ref")."""
    labels = {"a": "A", "b": "B", "ref": "ref", **(labels or {})}
    cols: list[tuple[str, str, bool]] = [("task", "task", False), ("metric", "metric", False), ("a", labels["a"], False)]
    has_b = any("b" in r for r in rows)
    has_ref = any("ref" in r for r in rows)
    if has_b:
        cols += [("b", labels["b"], False), ("delta", f"{labels['b']}-{labels['a']}", True)]
    if has_ref:
        cols += [("ref", labels["ref"], False), ("aVsRef", f"{labels['a']}-{labels['ref']}", True)]
        if has_b:
            cols.append(("bVsRef", f"{labels['b']}-{labels['ref']}", True))
    has_tol = any("within" in r for r in rows)
    table = [[title for _, title, _ in cols] + (["tol", "ok"] if has_tol else [])]
    for r in rows:
        cells = [str(r[k]) if k in ("task", "metric") else _fmt(r.get(k), signed) for k, _, signed in cols]
        if has_tol:
            cells += ([f"{r['tolerance']:g}", "yes" if r["within"] else "NO"] if "within" in r else ["-", "-"])
        table.append(cells)
    cols = cols + ([("tolerance", "tol", False), ("within", "ok", False)] if has_tol else [])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = []
    for n, row in enumerate(table):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _label(source: str) -> str:
    s = source.rstrip("/")
    if s.startswith("ref:"):
        return s[4:]
    base = s.rsplit("/", 1)[-1]
    if base == RESULTS and "/" in s:
        base = s.rsplit("/", 2)[-2]
    return base or s


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="results.json / output dir / lmms-eval JSON / EvalSuite YAML / reference name")
    p.add_argument("b", nargs="?", default=None, help="second evaluation (same forms as A)")
    p.add_argument("--reference", default=None, help="published numbers to compare with, e.g. llava-ov-1.5-8b")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.add_argument("--tolerance", action="append", metavar="X | TASK/METRIC=X",
                   help="allowed absolute difference (B - A, or A - ref without B): for every metric, "
                        "or for one; repeatable")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a metric is outside its tolerance (or missing on one side)")


def run(args: argparse.Namespace) -> None:
    """Prints the table (or JSON rows); no result line (it is not a pod's step)."""
    if args.b is None and args.reference is None:
        raise JobError("compare: give two evaluations, or one and --reference")
    a = load_results(args.a)
    b = load_results(args.b) if args.b is not None else None
    ref = reference_results(args.reference) if args.reference else None
    default, per = parse_tolerances(args.tolerance)
    if args.check and default is None and not per:
        raise JobError("compare: --check needs --tolerance")
    rows = compare_rows(a, b, ref)
    outside = apply_tolerances(rows, default, per)
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    else:
        labels = {"a": _label(args.a), "b": _label(args.b) if args.b else "B", "ref": args.reference or "ref"}
        if labels["a"] == labels["b"]:
            labels = {**labels, "a": "A", "b": "B"}
        print(format_table(rows, labels))
    if args.check and outside:
        raise StepFailed(f"compare: {len(outside)} metric(s) outside tolerance: " + "; ".join(outside))
