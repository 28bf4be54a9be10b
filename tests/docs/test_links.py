"""Every relative link in the README, docs/ and examples/ resolves to a file or directory of the repository
(and to a heading, when it names an anchor); no link or path points outside the repository."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from md_read import ROOT, anchors, links, markdown_files

FILES = markdown_files()


def _problems(md: Path) -> list[str]:
    out = []
    for target in links(md.read_text()):
        parts = urlsplit(target)
        if parts.scheme in ("http", "https", "mailto"):
            continue
        if parts.scheme or parts.netloc:
            out.append(f"{target}: not a relative link (scheme {parts.scheme or '//'})")
            continue
        path, anchor = unquote(parts.path), unquote(parts.fragment)
        if path.startswith("/"):
            out.append(f"{target}: absolute path")
            continue
        dest = (md.parent / path).resolve() if path else md.resolve()
        if not dest.is_relative_to(ROOT):
            out.append(f"{target}: outside the repository")
        elif not dest.exists():
            out.append(f"{target}: no such file or directory")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            out.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return out


@pytest.mark.parametrize("md", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(md):
    problems = _problems(md)
    assert not problems, "\n".join(problems)


# Paths that exist only on the development machines (the design notes, workspaces, caches).
OUTSIDE = re.compile(r"\.\./shared|(?<![\w.])shared/design|/work/|/root/|/home/\w+/|[A-Za-z]:\\\\")


@pytest.mark.parametrize("md", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_points_outside_the_repository(md):
    hits = [m.group(0) for m in OUTSIDE.finditer(md.read_text())]
    assert not hits, hits


def test_the_readme_points_at_the_api_reference_and_the_install_guide():
    targets = {urlsplit(t).path for t in links((ROOT / "README.md").read_text())}
    assert {"docs/api.md", "docs/install.md", "docs/gitops.md"} <= targets


# The checker itself, on made-up files: it must be able to fail.

def test_the_checker_finds_broken_outside_and_anchorless_links(tmp_path, monkeypatch):
    import md_read as md_module

    monkeypatch.setattr(md_module, "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\n## Same\n## Same\n<a id=\"custom\"></a>\n")
    doc = tmp_path / "docs" / "a.md"
    doc.write_text("\n".join([
        "[ok](b.md) [ok](b.md#title) [ok](b.md#same-1) [ok](b.md#custom) [ok](#here) [web](https://x.org/a)",
        "# Here", "[missing](c.md) [anchor](b.md#nope) [out](../../etc/passwd) [abs](/etc/hosts)",
        "[file](file:///etc/hosts)", "```", "[in code](nowhere.md)", "```", "`[span](nowhere2.md)`",
        "[ref]: ../missing-ref.md", "<img src=\"img/none.png\">"]))
    got = _problems(doc)
    assert [p.split(":")[0] for p in got] == ["c.md", "b.md#nope", "../../etc/passwd", "/etc/hosts",
                                                "file", "../missing-ref.md", "img/none.png"], got
