"""report.html: what a local run produced, from the CRs' statuses (the same numbers as
`vlmops status`), the jobs' own plots, loss curves from the training logs, and lineage.

The report is one self-contained file: images are embedded, status values are tables, and local
paths are written relative to the report (the workdir), so it can be moved or sent as it is."""
from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from ..kinds import KINDS, references
from . import report_html as h
from .state import Workdir

STATUS_SECTIONS = ("stats", "progress", "checkpoint", "output")
MAX_IMAGE_BYTES = 5_000_000


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


def _plot_losses(wd: Workdir, stages: list[str]) -> bytes | None:
    """The loss curves as PNG bytes (also written to loss-curves.png beside the report)."""
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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    (wd.root / "loss-curves.png").write_bytes(buf.getvalue())
    return buf.getvalue()


def _output_images(out: str | None) -> list[tuple[bytes, str]]:
    """The PNGs a local output holds (the jobs' plots), captioned with their path inside it."""
    if not out or not out.startswith(("file://", "/")):
        return []
    root = Path(out.removeprefix("file://"))
    found = []
    for png in sorted(root.rglob("*.png")) if root.is_dir() else []:
        if "shards" in png.parts or "hf" in png.parts or png.stat().st_size > MAX_IMAGE_BYTES:
            continue
        found.append((png.read_bytes(), png.relative_to(root).as_posix()))
    return found


def _status_table(wd: Workdir) -> str:
    from .runner import status_rows

    rows = ["<table><tr><th>kind</th><th>name</th><th>phase</th><th>detail</th><th>message</th></tr>"]
    kinds = {k.short: name for name, k in KINDS.items()}
    for r in status_rows(wd):
        link = h.anchor("cr", kinds.get(r["kind"], r["kind"]), r["name"])
        rows.append(f"<tr><td>{r['kind']}</td><td><a href='#{link}'>{html.escape(r['name'])}</a></td>"
                    f"<td class='phase-{html.escape(r['phase'])}'>{html.escape(r['phase'])}</td>"
                    f"<td>{html.escape(r['detail'])}</td><td>{html.escape(r['message'])}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _links(keys: list[tuple[str, str]]) -> str:
    return ", ".join(f"<a href='#{h.anchor('cr', k, n)}'>{html.escape(k)}/{html.escape(n)}</a>" for k, n in keys)


def _cr_section(obj: dict[str, Any], root: Path, inputs: list[tuple[str, str]], users: list[tuple[str, str]]) -> str:
    st = obj.get("status") or {}
    kind, name = obj["kind"], obj["metadata"]["name"]
    parts = [f"<h2 id='{h.anchor('cr', kind, name)}'>{kind}/{html.escape(name)}</h2>"]
    if inputs or users:
        parts.append("<p class=meta>" + (f"made from {_links(inputs)}" if inputs else "")
                     + ("; " if inputs and users else "") + (f"used by {_links(users)}" if users else "")
                     + f" &middot; <a href='#{h.anchor('lineage', kind, name)}'>lineage</a></p>")
    if (section := KINDS[kind].report_html) is not None:
        parts.append(section(obj))
    for key in STATUS_SECTIONS:
        if st.get(key) is not None:
            parts.append(f"<h3>{key}</h3>" + h.values_table(st[key], root))
    parts += [h.figure(png, caption) for png, caption in _output_images((st.get("output") or {}).get("uri"))]
    return "".join(parts)


def _lineage(crs: list[dict[str, Any]], root: Path, refs: dict[tuple[str, str], list[tuple[str, str]]]) -> str:
    """One tree for the whole run, from what nothing else reads (the last products) down to the data."""
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in crs}
    used = {p for ps in refs.values() for p in ps}
    roots = [k for k in reversed(list(by_key)) if k not in used]

    def node(key: tuple[str, str]) -> str:
        st = by_key[key].get("status") or {}
        out = st.get("output") or {}
        meta = " ".join(x for x in (h.value_html(out["uri"], root) if out.get("uri") else "",
                                    h.short_digest(out["digest"]) if out.get("digest") else "") if x)
        return (f"<a href='#{h.anchor('cr', *key)}'>{html.escape(key[0])}/{html.escape(key[1])}</a> "
                f"<span class=meta>{html.escape(st.get('phase') or 'Pending')} {meta}</span>")

    return "<h2 id=lineage>Lineage</h2>" + h.lineage_tree(roots, lambda k: refs.get(k, []), node)


def render_report(wd: Workdir) -> str:
    from .runner import ordered_crs

    crs = ordered_crs(wd)
    keys = [(o["kind"], o["metadata"]["name"]) for o in crs]
    refs = {k: [r for r in references(o) if r in keys] for k, o in zip(keys, crs)}
    users = {k: [u for u in keys if k in refs[u]] for k in keys}
    parts = ["<!doctype html><meta charset=utf-8><title>vlmops report</title>", f"<style>{h.STYLE}</style>",
             "<h1>vlmops local run</h1>", _status_table(wd)]
    stages = [o["metadata"]["name"] for o in crs if KINDS[o["kind"]].plots_loss]
    losses = _plot_losses(wd, stages)
    if losses:
        parts.append("<h2>Training loss</h2>" + h.figure(losses, "loss per step, stages in dependency order"))
    for key, obj in zip(keys, crs):
        parts.append(_cr_section(obj, wd.root, refs[key], users[key]))
    parts.append(_lineage(crs, wd.root, refs))
    return "".join(parts)


def write_report(wd: Workdir) -> Path:
    path = wd.root / "report.html"
    path.write_text(render_report(wd))
    return path
