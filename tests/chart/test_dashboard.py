"""Dashboard and alerts only query metrics the operator or the jobs actually export."""
from __future__ import annotations

import json
import re

import pytest

from chart_helpers import CHART, ROOT, one

metrics = pytest.importorskip("vlmops.metrics")

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
            "bool", "inf", "nan", "start", "end"}
ALWAYS = {"up"}  # Prometheus' own scrape health series


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (no full parser; enough for our expressions)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)   # strings
    e = re.sub(r"\$\{?\w+\}?", " ", e)                                              # Grafana variables
    e = re.sub(r"\{[^{}]*\}", " ", e)                                              # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)                                            # ranges / subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def histogram_names() -> set[str]:
    from prometheus_client import Histogram

    return {getattr(v, "_name") for v in vars(metrics).values() if isinstance(v, Histogram)}


def allowed(name: str) -> bool:
    known = set(metrics.ALL_METRIC_NAMES) | ALWAYS
    if name in known:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in histogram_names():
            return True
    return False


def test_metric_names_are_extracted_from_promql():
    assert metric_names('sum by (controller) (rate(vlmops_reconcile_total{result="error"}[5m])) > 0') == \
        {"vlmops_reconcile_total"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))") == {"x_bucket"}
    assert metric_names("(a < b) and on (namespace, pod) (changes(c[30m]) == 0)") == {"a", "b", "c"}
    assert metric_names("absent(up{job=\"vlmops\"} == 1) or abs(l) == +Inf or 1e-05 > m offset 5m") == \
        {"up", "l", "m"}
    assert metric_names('query_result(count by (namespace) (a or b))') == {"a", "b"}
    assert not allowed("vlmops_reconcile_total_bucket") and allowed("vlmops_reconcile_time_seconds_bucket")
    assert not allowed("vlmops_made_up")


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads((CHART / "dashboards" / "vlmops.json").read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", q))
    return out


def test_dashboard_queries_only_exported_metrics():
    exprs = dashboard_exprs()
    assert len(exprs) > 15
    bad = [(title, n) for title, e in exprs for n in metric_names(e) if not allowed(n)]
    assert not bad, f"dashboard uses metrics nobody exports: {bad}"


def test_dashboard_shows_every_exported_metric():
    used = set().union(*(metric_names(e) for _, e in dashboard_exprs()))
    base = {re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n for n in used}
    missing = sorted(set(metrics.ALL_METRIC_NAMES) - base)
    assert not missing, f"exported but not on the dashboard: {missing}"


def test_dashboard_has_the_required_panels():
    dash = json.loads((CHART / "dashboards" / "vlmops.json").read_text())
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for needle in ("reconciles", "errors", "latency", "by phase", "packing efficiency", "compression",
                   "balanced", "entropy", "gini", "tokens / s", "step", "mfu", "loss", "eval scores"):
        assert needle in titles, needle
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert dash["uid"] and any(v["type"] == "datasource" for v in dash["templating"]["list"])


def test_alerts_query_only_exported_metrics(all_objs):
    rule = one(all_objs, "PrometheusRule")
    bad = []
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            names = metric_names(r["expr"])
            assert names, r["alert"]
            bad += [(r["alert"], n) for n in names if not allowed(n)]
    assert not bad, f"alerts use metrics nobody exports: {bad}"


def test_every_alert_has_a_runbook_section(all_objs):
    text = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#{2,3} (.+)$", text, re.M)}
    rule = one(all_objs, "PrometheusRule")
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            url = r["annotations"]["runbook_url"]
            assert url.startswith("https://") and "docs/runbooks.md#" in url
            assert url.split("#", 1)[1] in anchors, f"{r['alert']}: no '## {r['alert']}' in docs/runbooks.md"
