"""report.html: what a local run produced, from the CRs' statuses (the same numbers as
`vlmops status`), the jobs' own plots, loss curves from the training logs, and lineage."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..kinds import KINDS
from .state import Workdir


def loss_curve(wd: Workdir, stage: str) -> list[tuple[int, float]]:
    """(step, loss) from the training job's per-step JSON log lines."""
    points: dict[int, float] = {}
    for log in sorted(wd.log_dir(stage).glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith('{"') and '"loss"' in line and '"step"' in line and "vlmopsResult" not in line:
                try:
                    d = json.loads(line)
                    points[int(d["step"])] = float(d["loss"])
                except (ValueError, KeyError, TypeError):
                    continue
    return sorted(points.items())


def _plot_losses(wd: Workdir, stages: list[str]) -> Path | None:
    curves = {s: loss_curve(wd, s) for s in stages}
    curves = {s: c for s, c in curves.items() if c}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    offset = 0
    for s, c in curves.items():  # stages one after another on a shared step axis
        ax.plot([offset + st for st, _ in c], [v for _, v in c], marker="o", ms=3, label=s)
        offset += c[-1][0]
    ax.set_xlabel("step (stages chained)")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    path = wd.root / "loss-curves.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _img(path: Path, caption: str) -> str:
    return (f"<figure><img src='{path.as_uri()}'><figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(wd: Workdir) -> Path:
    from .runner import lineage, ordered_crs, status_rows

    crs = ordered_crs(wd)
    parts = ["<!doctype html><meta charset=utf-8><title>vlmops report</title>",
             "<style>body{font:14px sans-serif;margin:2em;max-width:1100px}td,th{border:1px solid #ccc;"
             "padding:4px 8px}table{border-collapse:collapse}img{max-width:640px;margin:8px}</style>",
             "<h1>vlmops local run</h1><table><tr><th>kind</th><th>name</th><th>phase</th><th>detail</th></tr>"]
    for r in status_rows(wd):
        parts.append(f"<tr><td>{r['kind']}</td><td>{html.escape(r['name'])}</td><td>{r['phase']}</td>"
                     f"<td>{html.escape(r['detail'])}</td></tr>")
    parts.append("</table>")
    stages = [o["metadata"]["name"] for o in crs if KINDS[o["kind"]].plots_loss]
    losses = _plot_losses(wd, stages)
    if losses:
        parts.append("<h2>Training loss</h2>" + _img(losses, "loss per step, stages in dependency order"))
    for obj in crs:
        st = obj.get("status") or {}
        name = obj["metadata"]["name"]
        parts.append(f"<h2>{obj['kind']}/{html.escape(name)}</h2>")
        if (section := KINDS[obj["kind"]].report_html) is not None:
            parts.append(section(obj))
        for key in ("stats", "progress", "checkpoint"):
            if st.get(key) is not None:
                parts.append(f"<h3>{key}</h3><pre>{html.escape(json.dumps(st[key], indent=1))}</pre>")
        out = (st.get("output") or {}).get("uri")
        if out and out.startswith(("file://", "/")):
            root = Path(out.removeprefix("file://"))
            for png in sorted(root.rglob("*.png")) if root.exists() else []:
                if "shards" in png.parts or "hf" in png.parts or png.stat().st_size > 5_000_000:
                    continue
                parts.append(_img(png, f"{png.relative_to(root)}"))
        parts.append("<h3>lineage</h3><pre>")
        for link in lineage(wd, name):
            parts.append(html.escape(f"{'  ' * link['depth']}{link['kind']}/{link['name']} "
                                     f"{link['uri']} {link['digest']}") + "\n")
        parts.append("</pre>")
    path = wd.root / "report.html"
    path.write_text("".join(parts))
    return path
