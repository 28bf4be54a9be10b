"""Writes charts/vlmops/dashboards/vlmops.json (the Grafana dashboard the chart ships).

`python charts/build_dashboard.py` regenerates it; `--check` exits 1 if the committed file differs
(tests/chart/test_dashboard.py runs the check). Every PromQL expression may only use metric names
from vlmops.metrics.ALL_METRIC_NAMES (plus `up`); the test enforces that too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "vlmops" / "dashboards" / "vlmops.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"


class Layout:
    def __init__(self) -> None:
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1
        self.panels: list[dict[str, Any]] = []

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self.y += self.row_h
        self.x, self.row_h = 0, 0
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, type_: str, title: str, targets: list[dict[str, Any]], *, w: int = 8, h: int = 8,
              unit: str = "short", description: str = "", options: dict[str, Any] | None = None,
              field_extra: dict[str, Any] | None = None, transformations: list[dict[str, Any]] | None = None) -> None:
        if self.x + w > 24:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
        refs = "ABCDEFGH"
        p: dict[str, Any] = {
            "type": type_, "title": title, "id": self._id(), "datasource": DS, "description": description,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit, **(field_extra or {})}, "overrides": []},
            "options": options or {},
            "targets": [{"refId": refs[i], "datasource": DS, "editorMode": "code", "range": True, **t}
                        for i, t in enumerate(targets)],
        }
        if transformations:
            p["transformations"] = transformations
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)


def q(expr: str, legend: str = "__auto", **kw: Any) -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend, **kw}


def build() -> dict[str, Any]:
    L = Layout()
    ts = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
          "tooltip": {"mode": "multi", "sort": "desc"}}

    L.row("Operator")
    L.panel("stat", "Operator up", [q('sum(up{job="vlmops"})', "up")], w=4, h=6,
            description="Scraped operator targets that answer (ServiceMonitor job label = chart name).")
    L.panel("timeseries", "Reconciles / s", [q(f"sum by (controller, result) (rate(vlmops_reconcile_total[{RATE}]))",
                                                "{{controller}} {{result}}")], w=10, h=6, unit="ops", options=ts)
    L.panel("timeseries", "Reconcile errors / s", [q(f"sum by (controller) (rate(vlmops_reconcile_errors_total[{RATE}]))",
                                                      "{{controller}}")], w=10, h=6, unit="ops", options=ts)
    L.panel("timeseries", "Reconcile latency (p50 / p99)", [
        q(f"histogram_quantile(0.5, sum by (le, controller) (rate(vlmops_reconcile_time_seconds_bucket[{RATE}])))",
          "p50 {{controller}}"),
        q(f"histogram_quantile(0.99, sum by (le, controller) (rate(vlmops_reconcile_time_seconds_bucket[{RATE}])))",
          "p99 {{controller}}"),
    ], w=8, unit="s", options=ts)
    L.panel("timeseries", "API writes / s (steady state should be 0)",
            [q(f"sum by (verb, resource) (rate(vlmops_api_writes_total[{RATE}]))", "{{verb}} {{resource}}")],
            w=8, unit="ops", options=ts,
            description="Writes the operator makes to the API server; a flat non-zero line means a hot loop.")
    L.panel("bargauge", "Custom resources by phase", [q("sum by (kind, phase) (vlmops_resources)", "{{kind}} {{phase}}",
                                                        instant=True, range=False)],
            w=8, options={"displayMode": "basic", "orientation": "horizontal", "showUnfilled": True})
    L.panel("timeseries", "Child Job / PyTorchJob failures",
            [q(f"sum by (kind) (increase(vlmops_child_failures_total[{RATE}]))", "{{kind}}")], w=24, h=6,
            options=ts)

    L.row("Data: balancing and packing")
    L.panel("timeseries", "Packing efficiency", [q(f"vlmops_packing_efficiency{{{NS}}}", "{{namespace}}/{{name}}")],
            unit="percentunit", options=ts, field_extra={"min": 0, "max": 1},
            description="tokens / (sequences x sequenceLength); 1.0 = no padding.")
    L.panel("timeseries", "Packing compression (samples / sequence)",
            [q(f"vlmops_packing_compression_ratio{{{NS}}}", "{{namespace}}/{{name}}")], options=ts)
    L.panel("stat", "Packing gap to the lower bound",
            [q(f"vlmops_packing_gap_to_lower_bound{{{NS}}}", "{{namespace}}/{{name}}", instant=True, range=False)],
            unit="percentunit", description="sequences / best lower bound - 1 (0 = provably optimal).")
    L.panel("stat", "Packing lower bound (sequences)",
            [q(f"vlmops_packing_lower_bound_sequences{{{NS}}}", "{{namespace}}/{{name}}", instant=True, range=False)])
    L.panel("timeseries", "Balanced samples selected",
            [q(f"vlmops_balance_selected_samples{{{NS}}}", "{{namespace}}/{{name}}")], options=ts)
    L.panel("timeseries", "Concept entropy (bits, before / after)",
            [q(f"vlmops_balance_entropy_bits{{{NS}}}", "{{namespace}}/{{name}} {{when}}")], w=12, unit="none",
            options=ts)
    L.panel("timeseries", "Concept Gini (before / after)",
            [q(f"vlmops_balance_gini{{{NS}}}", "{{namespace}}/{{name}} {{when}}")], w=12, unit="none", options=ts,
            field_extra={"min": 0, "max": 1})

    L.row("Training")
    L.panel("timeseries", "Tokens / s", [
        q(f"vlmops_stage_tokens_per_second{{{NS}}}", "{{namespace}}/{{name}} (status)"),
        q(f"max by (namespace, name) (vlmops_train_tokens_per_second{{{NS}}})", "{{namespace}}/{{name}} (pod)"),
    ], unit="short", options=ts)
    L.panel("timeseries", "Step / total steps", [
        q(f"vlmops_stage_step{{{NS}}}", "{{namespace}}/{{name}} step (status)"),
        q(f"max by (namespace, name) (vlmops_train_step{{{NS}}})", "{{namespace}}/{{name}} step (pod)"),
        q(f"max by (namespace, name) (vlmops_train_total_steps{{{NS}}})", "{{namespace}}/{{name}} total"),
    ], options=ts)
    L.panel("timeseries", "MFU", [
        q(f"vlmops_stage_mfu{{{NS}}}", "{{namespace}}/{{name}} (status)"),
        q(f"max by (namespace, name) (vlmops_train_mfu{{{NS}}})", "{{namespace}}/{{name}} (pod)"),
    ], unit="percentunit", options=ts)
    L.panel("timeseries", "Loss", [q(f"max by (namespace, name) (vlmops_train_loss{{{NS}}})", "{{namespace}}/{{name}}")],
            w=12, unit="none", options=ts)
    L.panel("timeseries", "Samples / s (before packing)",
            [q(f"max by (namespace, name) (vlmops_train_samples_per_second{{{NS}}})", "{{namespace}}/{{name}}")],
            w=12, options=ts)

    L.row("RL post-training")
    L.panel("timeseries", "RL mean reward", [q(f"vlmops_rl_reward_mean{{{NS}}}", "{{namespace}}/{{name}}")],
            unit="none", options=ts)
    L.panel("timeseries", "RL KL to the phase's start", [q(f"vlmops_rl_kl{{{NS}}}", "{{namespace}}/{{name}}")],
            unit="none", options=ts)
    L.panel("timeseries", "RL step", [q(f"vlmops_rl_step{{{NS}}}", "{{namespace}}/{{name}}")], options=ts)
    L.panel("timeseries", "RL tokens / s", [q(f"vlmops_rl_tokens_per_second{{{NS}}}", "{{namespace}}/{{name}}")],
            w=12, options=ts)
    L.panel("stat", "RL prompts selected", [q(f"vlmops_rl_selected_prompts{{{NS}}}", "{{namespace}}/{{name}}",
                                                instant=True, range=False)], w=12)

    L.row("Evaluation")
    L.panel("table", "Eval scores (latest)", [q(f"vlmops_eval_score{{{NS}}}", "", instant=True, range=False,
                                                 format="table")], w=16, h=9, unit="none",
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True,
                                                                              "instance": True, "job": True,
                                                                              "endpoint": True, "pod": True,
                                                                              "service": True, "container": True}}}])
    L.panel("stat", "Thresholds passed", [q(f"vlmops_eval_passed{{{NS}}}", "{{namespace}}/{{suite}}", instant=True,
                                             range=False)], w=8, h=9)

    return {
        "title": "vlmops",
        "uid": "vlmops-overview",
        "description": "vlmops operator and jobs: reconciles, CRs by phase, packing, balancing, training, evaluation.",
        "tags": ["vlmops", "training", "kubernetes"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            {"name": "namespace", "label": "Namespace", "type": "query", "datasource": DS,
             "query": {"query": "query_result(count by (namespace) (vlmops_packing_efficiency or "
                                "vlmops_balance_selected_samples or vlmops_stage_step or vlmops_eval_passed))",
                       "refId": "namespaces"},
             "definition": "query_result(count by (namespace) (vlmops_packing_efficiency or "
                           "vlmops_balance_selected_samples or vlmops_stage_step or vlmops_eval_passed))",
             "regex": '/namespace="([^"]+)"/', "includeAll": True, "allValue": ".*", "multi": True,
             "current": {}, "hide": 0, "refresh": 2, "sort": 1},
        ]},
        "panels": L.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    from generated import main as generate

    return generate(OUT, render, "build_dashboard.py", __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
