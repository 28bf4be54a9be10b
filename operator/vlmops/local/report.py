"""report.html: stats, plots and lineage of a local run, from the CRs' statuses."""
from __future__ import annotations

import html
import json
from pathlib import Path

from .state import Workdir


def write_report(wd: Workdir) -> Path:
    from .cli import lineage
    from .runner import status_rows

    rows = status_rows(wd)
    parts = ["<!doctype html><meta charset=utf-8><title>vlmops report</title>",
             "<style>body{font:14px sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px}"
             "table{border-collapse:collapse}img{max-width:640px;margin:8px}</style>",
             "<h1>vlmops local run</h1><table><tr><th>kind</th><th>name</th><th>phase</th><th>detail</th></tr>"]
    for r in rows:
        parts.append(f"<tr><td>{r['kind']}</td><td>{html.escape(r['name'])}</td><td>{r['phase']}</td>"
                     f"<td>{html.escape(r['detail'])}</td></tr>")
    parts.append("</table>")
    for obj in wd.crs():
        st = obj.get("status") or {}
        name = obj["metadata"]["name"]
        parts.append(f"<h2>{obj['kind']}/{html.escape(name)}</h2>")
        for key in ("stats", "progress", "results", "passed", "total", "failing"):
            if st.get(key) is not None:
                parts.append(f"<h3>{key}</h3><pre>{html.escape(json.dumps(st[key], indent=1))}</pre>")
        out = (st.get("output") or {}).get("uri")
        if out and out.startswith(("file://", "/")):
            root = Path(out.removeprefix("file://"))
            for png in sorted(root.rglob("*.png")) if root.exists() else []:
                if "shards" in png.parts or png.stat().st_size > 5_000_000:
                    continue
                parts.append(f"<figure><img src='{png.as_uri()}'><figcaption>{html.escape(png.name)}"
                             "</figcaption></figure>")
        parts.append("<h3>lineage</h3><pre>")
        for link in lineage(wd, name):
            parts.append(html.escape(f"{'  ' * link['depth']}{link['kind']}/{link['name']} "
                                     f"{link['uri']} {link['digest']}") + "\n")
        parts.append("</pre>")
    path = wd.root / "report.html"
    path.write_text("".join(parts))
    return path
