"""EvalSuite: reads a stage's HF export (or a checkpoint / HF id); one Job; thresholds gate the result."""
from __future__ import annotations

import html
from typing import Any

from vlmops_contract.thresholds import evaluate_thresholds

from .. import metrics
from ..api import eval_suite as api
from ..builders import eval_suite as builder
from .kind import Kind, Reference


def references(spec: api.EvalSuiteSpec) -> list[Reference]:
    if spec.model.rl_stage:
        return [("VLMRLStage", spec.model.rl_stage)]
    return [("VLMTrainingStage", spec.model.training_stage)] if spec.model.training_stage else []


def finish(spec: api.EvalSuiteSpec, status: dict[str, Any]) -> tuple[str, str] | None:
    """passed/total/failing from the results; a missed threshold fails the suite."""
    passed, total, failing = evaluate_thresholds(status.get("results") or [], spec.thresholds)
    status["passed"], status["total"] = passed, total
    status["failing"] = failing or None
    return ("ThresholdsNotMet", "failing: " + ", ".join(failing)) if passed < total else None


def export_metrics(ns: str, name: str, status: dict[str, Any]) -> None:
    metrics.remove_series(ns, name, (metrics.EVAL_SCORE,))  # tasks of an older generation must not linger
    for r in status.get("results") or []:
        try:
            metrics.EVAL_SCORE.labels(ns, name, r["task"], r["metric"]).set(float(r["value"]))
        except (TypeError, ValueError, KeyError):
            continue
    if status.get("passed") is not None:
        metrics.EVAL_PASSED.labels(ns, name).set(status["passed"])


def status_detail(status: dict[str, Any]) -> str:
    return f"passed {status.get('passed')}/{status.get('total')}" if status.get("total") is not None else ""


def report_html(obj: dict[str, Any]) -> str:
    """Scores against thresholds, one row per result."""
    st = obj.get("status") or {}
    thresholds = (obj.get("spec") or {}).get("thresholds") or {}
    rows = ["<table><tr><th>task</th><th>metric</th><th>value</th><th>threshold</th><th>result</th></tr>"]
    for r in st.get("results") or []:
        t = thresholds.get(f"{r['task']}/{r['metric']}")
        verdict = "" if t is None else ("pass" if float(r["value"]) >= float(t) else "FAIL")
        rows.append(f"<tr><td>{html.escape(r['task'])}</td><td>{html.escape(r['metric'])}</td>"
                    f"<td>{r['value']:.4g}</td><td>{'' if t is None else t}</td><td>{verdict}</td></tr>")
    rows.append("</table>")
    if st.get("total") is not None:
        rows.append(f"<p>thresholds passed: {st.get('passed')}/{st.get('total')}</p>")
    return "".join(rows)


KIND = Kind(
    api=api.KIND, position=3, build=builder.build, final_step="eval",
    result_keys=("results", "lmmsEvalVersion", "partial", "output"), references=references, finish=finish,
    export_metrics=export_metrics, status_detail=status_detail, report_html=report_html,
    sizes=lambda spec: [("spec.gpus", spec.gpus, "gpus")], gauges=(metrics.EVAL_SCORE, metrics.EVAL_PASSED),
)
