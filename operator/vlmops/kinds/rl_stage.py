"""VLMRLStage: reads a stage's HF export (or another RL stage's, or a URI); select (Indexed Job) ->
merge -> train; progress mirrored while GRPO runs; reward curves in the report; the HF export is
what evals read."""
from __future__ import annotations

import html
from typing import Any

from vlmops_contract.layouts import join
from vlmops_contract.layouts.rl import HF_EXPORT

from .. import metrics
from ..api import rl_stage as api
from ..builders import rl_stage as builder
from .kind import Kind, Reference, set_gauges


def references(spec: api.VLMRLStageSpec) -> list[Reference]:
    ref = spec.init_from
    if ref.training_stage:
        return [("VLMTrainingStage", ref.training_stage)]
    return [("VLMRLStage", ref.rl_stage)] if ref.rl_stage else []


def outputs(spec: api.VLMRLStageSpec) -> dict[str, Any]:
    out = spec.output.uri
    return {"output": {"uri": out}, "hf": join(out, HF_EXPORT), "checkpoint": {"latest": spec.checkpoint.uri}}


GAUGES = {"step": metrics.RL_STEP, "rewardMean": metrics.RL_REWARD, "kl": metrics.RL_KL,
          "tokensPerSecond": metrics.RL_TOKENS}


def export_metrics(ns: str, name: str, status: dict[str, Any]) -> None:
    set_gauges(status.get("progress") or {}, ns, name, GAUGES)
    set_gauges(status.get("selection") or {}, ns, name, {"selected": metrics.RL_SELECTED})


def status_detail(status: dict[str, Any]) -> str:
    p, s = status.get("progress") or {}, status.get("selection") or {}
    parts = []
    if s.get("selected") is not None:
        parts.append(f"selected {s['selected']}/{s.get('prompts')}")
    if p.get("step") is not None:
        reward = p.get("rewardMean")
        parts.append(f"{p.get('phase') or 'step'} {p['step']}/{p.get('totalSteps')}"
                     + (f", reward {reward:.3f}" if isinstance(reward, (int, float)) else ""))
    return ", ".join(parts)


def _svg(points: list[dict[str, Any]], key: str, label: str, w: int = 560, h: int = 150) -> str:
    """A line chart of `key` over the step (inline SVG: the report stays one self-contained file)."""
    pts = [(p["step"], float(p[key])) for p in points if isinstance(p.get(key), (int, float))]
    if not pts:
        return ""
    x0, x1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1)
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    hi = hi if hi > lo else lo + 1.0
    pad = 30

    def xy(s: float, v: float) -> str:
        return f"{pad + (s - x0) / (x1 - x0) * (w - 2 * pad):.1f},{h - pad - (v - lo) / (hi - lo) * (h - 2 * pad):.1f}"

    bounds = {"x0": x0, "x1": x1, "lo": round(lo, 4), "hi": round(hi, 4)}
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img' "
            f"aria-label='{html.escape(label)}'><rect width='{w}' height='{h}' fill='white' stroke='#ccc'/>"
            f"<polyline fill='none' stroke='#1f77b4' stroke-width='2' points='{' '.join(xy(s, v) for s, v in pts)}'/>"
            f"<text x='{pad}' y='{pad - 10}' font-size='11'>{html.escape(label)}: {bounds['lo']} .. {bounds['hi']}</text>"
            f"<text x='{pad}' y='{h - 8}' font-size='11'>step {x0}</text>"
            f"<text x='{w - pad}' y='{h - 8}' font-size='11' text-anchor='end'>step {x1}</text></svg>"
            f"<figcaption>{html.escape(label)} per step</figcaption></figure>")


def report_html(obj: dict[str, Any]) -> str:
    """The reward curve (and KL, completion length) over the GRPO steps, and the selection's counts."""
    st = obj.get("status") or {}
    curve = st.get("curve") or []
    parts = ["<h3>reward curve</h3>" + _svg(curve, "reward", "mean reward")] if curve else []
    parts += [_svg(curve, "kl", "KL to the phase's start"), _svg(curve, "length", "completion length (tokens)")]
    sel = st.get("selection") or {}
    if sel:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in (sel.get("verdicts") or {}).items())
        policy = (sel.get("policy") or {})
        parts.append(f"<h3>selection</h3><p>{sel.get('selected')} of {sel.get('prompts')} prompts kept "
                     f"(mean Pass@1 {sel.get('passAt1Mean')}, Pass@N {sel.get('passAtNMean')}); sampled with "
                     f"{html.escape(str(policy.get('uri')))}</p><table><tr><th>verdict</th><th>prompts</th></tr>"
                     f"{rows}</table>")
    return "".join(p for p in parts if p)


KIND = Kind(
    api=api.KIND, position=4, build=builder.build, final_step="train",
    result_keys=("selection", "progress", "checkpoint", "output", "hf", "curve"), references=references,
    outputs=outputs, export_metrics=export_metrics, status_detail=status_detail, mirrors_progress=True,
    report_html=report_html,
    sizes=lambda spec: [("spec.shards", spec.shards, "shards"), ("spec.gpus", spec.gpus, "gpus")],
    gauges=(*GAUGES.values(), metrics.RL_SELECTED),
)
