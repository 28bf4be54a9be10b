"""HTML pieces of report.html: status values as tables, local paths written relative to the report,
images embedded as data: URIs, and lineage as a tree that shows every node once. Pure functions
of their arguments (reading an image file is the only I/O)."""
from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

STYLE = """
body{font:14px/1.4 sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.4em 0 1em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td,code,.node{overflow-wrap:anywhere}
figure{display:inline-block;margin:8px}
figure img{max-width:640px;height:auto}
figcaption{font-size:12px;color:#555}
ul.tree,ul.tree ul{list-style:none;padding-left:1.2em;margin:0}
ul.tree{padding-left:0}
ul.tree li{margin:2px 0}
ul.tree ul{border-left:1px solid #ddd}
.meta{color:#666;font-size:12px}
.phase-Failed{color:#b00020;font-weight:600}
"""

DIGEST_CHARS = 19  # "sha256:" + 12 hex digits, as the jobs log them
FIRST_COLUMNS = ("before", "after")  # statuses are stored with sorted keys; these read in this order


def anchor(prefix: str, kind: str, name: str) -> str:
    return f"{prefix}-{kind}-{name}"


def display_path(value: str, root: Path) -> str | None:
    """A local path or file:// URI as a path relative to `root` (where the report is), else None."""
    if value.startswith("file://"):
        value = value[len("file://"):]
    if not value.startswith("/"):
        return None
    return Path(os.path.relpath(value, root)).as_posix()


def short_digest(value: str) -> str:
    if value.startswith("sha256:") and len(value) > DIGEST_CHARS:
        return (f"<code title='{html.escape(value)}'>{html.escape(value[:DIGEST_CHARS])}&hellip;</code>")
    return f"<code>{html.escape(value)}</code>"


def value_html(value: Any, root: Path) -> str:
    """One status value: numbers compact, local paths relative (and linked), digests shortened."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        rel = display_path(value, root)
        if rel is not None:
            return f"<a href='{html.escape(rel)}'><code>{html.escape(rel)}</code></a>"
        if value.startswith("sha256:"):
            return short_digest(value)
        return html.escape(value)
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(value_html(v, root) for v in value)
    return values_table(value, root)


def _cell(value: Any, root: Path) -> str:
    cls = " class=num" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"<td{cls}>{value_html(value, root)}</td>"


def _flat(d: dict[str, Any]) -> bool:
    return all(not isinstance(v, (dict, list)) for v in d.values())


def values_table(value: Any, root: Path) -> str:
    """A status document as tables. Scalars: one key/value table. Sibling dicts of scalars (before /
    after) side by side, one column each. A list of dicts: one row each. Anything deeper recurses."""
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            cols = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
            rows = "".join("<tr>" + "".join(_cell(v.get(c), root) for c in cols) + "</tr>" for v in value)
            return f"<table><tr>{head}</tr>{rows}</table>"
        return value_html(value, root) if value else "&ndash;"
    if not isinstance(value, dict):
        return value_html(value, root)
    scalars = {k: v for k, v in value.items() if not isinstance(v, dict)}
    groups = {k: v for k, v in value.items() if isinstance(v, dict) and v and _flat(v)}
    groups = dict(sorted(groups.items(), key=lambda kv: FIRST_COLUMNS.index(kv[0]) if kv[0] in FIRST_COLUMNS
                         else len(FIRST_COLUMNS)))
    deeper = {k: v for k, v in value.items() if isinstance(v, dict) and k not in groups}
    parts = []
    if scalars:
        parts.append("<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v, root)}</tr>"
                                          for k, v in scalars.items()) + "</table>")
    if groups:
        keys = list(dict.fromkeys(k for g in groups.values() for k in g))
        head = "<tr><th></th>" + "".join(f"<th>{html.escape(str(g))}</th>" for g in groups) + "</tr>"
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th>" + "".join(_cell(g.get(k), root) for g in groups.values())
                       + "</tr>" for k in keys)
        parts.append(f"<table>{head}{rows}</table>")
    for k, v in deeper.items():
        parts.append(f"<h4>{html.escape(str(k))}</h4>" + values_table(v, root))
    return "".join(parts) or "&ndash;"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, caption: str) -> str:
    """An image carried inside the report (a data: URI): the report works wherever it is moved."""
    return (f"<figure><img src='{data_uri(png)}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


Key = tuple[str, str]


def lineage_tree(roots: Iterable[Key], parents: Callable[[Key], list[Key]], node: Callable[[Key], str]) -> str:
    """Nested lists from each root down to what it was made from. A node reached again (a dataset
    two stages read) is shown once; later it is a link back to where it was shown."""
    shown: set[Key] = set()

    def walk(key: Key) -> str:
        if key in shown:
            return (f"<li class=ref>&#8627; <a href='#{anchor('lineage', *key)}'>{html.escape(key[0])}/"
                    f"{html.escape(key[1])}</a> <span class=meta>(above)</span></li>")
        shown.add(key)
        below = "".join(walk(p) for p in parents(key))
        return (f"<li class=node id='{anchor('lineage', *key)}'>{node(key)}"
                + (f"<ul>{below}</ul>" if below else "") + "</li>")

    items = "".join(walk(r) for r in roots if r not in shown)
    return f"<ul class=tree>{items}</ul>"
