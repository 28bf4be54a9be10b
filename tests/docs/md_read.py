"""The little markdown reading the docs tests need: links and headings, outside code."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
_HTML = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"", re.I)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:id|name)=\"([^\"]+)\"", re.I)


def prose(text: str) -> str:
    """The text without fenced code blocks (inline code kept: link texts often are code)."""
    return _FENCE.sub("", text)


def links(text: str) -> list[str]:
    """Every link target: inline, reference definitions, HTML href/src; none from code."""
    body = prose(text)
    no_code = _CODE.sub(lambda m: "x" * len(m.group(0)), body)  # a code span is never a link
    found = [m.group(1) for m in _INLINE.finditer(no_code)]
    found += [m.group(1) for m in _REFDEF.finditer(no_code)]
    found += [m.group(1) for m in _HTML.finditer(no_code)]
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*\*|__|\*|_)(\S.*?\S|\S)\1", r"\2", text)
    return "".join(c for c in text.strip().lower().replace(" ", "-") if c.isalnum() or c in "-_")


def anchors(text: str) -> set[str]:
    """The anchors a markdown file defines: heading slugs (GitHub numbers repeats -1, -2) and HTML ids."""
    seen: dict[str, int] = {}
    out = set()
    for m in _HEADING.finditer(prose(text)):
        slug = _slug(m.group(2))
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    out |= set(_HTML_ANCHOR.findall(text))
    return out


def markdown_files() -> list[Path]:
    """What users read in the repository: README.md, docs/*.md, examples/**/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]
