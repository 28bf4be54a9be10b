"""docs/gitops.md describes the GitOps examples as they are: its tables of Argo CD waves and Flux
Kustomizations are read back and compared with the files, and every example file is named in it."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gitops.md"
GITOPS = ROOT / "examples" / "gitops"


def _table(header_start: str) -> list[dict[str, str]]:
    """The markdown table whose header row starts with `header_start`, as dicts (backticks stripped)."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append(dict(zip(header, cells)))
    return rows


def _code(cell: str) -> str:
    m = re.match(r"`([^`]*)`", cell)
    return m.group(1) if m else cell


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_argocd_wave_table_is_the_apps_directory():
    root = _docs(GITOPS / "argocd" / "root.yaml")[0]
    apps = [d for f in sorted((ROOT / root["spec"]["source"]["path"]).glob("*.yaml")) for d in _docs(f)]
    files = {a["metadata"]["name"]: (int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]),
                                     a["spec"]["source"]["path"], a["spec"]["syncPolicy"]) for a in apps}
    rows = _table("| wave | Application |")
    assert {_code(r["Application"]) for r in rows} == set(files)
    for r in rows:
        wave, path, policy = files[_code(r["Application"])]
        assert int(r["wave"]) == wave and _code(r["source"]) == path
        for option in policy.get("syncOptions", []):
            assert f"`{option}`" in r["sync options"], (r["Application"], option)
        assert (f"`prune: {str(policy['automated']['prune']).lower()}`" in r["sync options"]) == (
            policy["automated"]["prune"] is False), r["Application"]
    assert f"`{root['metadata']['name']}`" in DOC.read_text()
    retry = root["spec"]["syncPolicy"]["retry"]
    assert f"{retry['limit']} times" in DOC.read_text() and retry["backoff"]["duration"] in DOC.read_text()


def test_the_flux_table_is_kustomizations_yaml():
    ks = {k["metadata"]["name"]: k["spec"] for k in _docs(GITOPS / "flux" / "kustomizations.yaml")}
    rows = _table("| Kustomization |")
    assert {_code(r["Kustomization"]) for r in rows} == set(ks)
    for r in rows:
        spec = ks[_code(r["Kustomization"])]
        deps = [d["name"] for d in spec.get("dependsOn", [])]
        assert [_code(c.strip()) for c in r["dependsOn"].split(",") if c.strip() != "—"] == deps
        assert _code(r["path"]) == spec["path"]
        assert r["timeout"] == spec["timeout"] and r["retryInterval"] == spec["retryInterval"]
        assert r["prune"] == str(spec["prune"]).lower()
        assert spec["wait"] is True
    assert "`wait: true`" in DOC.read_text()


def test_every_gitops_file_is_in_the_doc():
    text = DOC.read_text()
    for path in sorted(GITOPS.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(ROOT).as_posix()
        # named by its path, its directory's path (a directory synced as a whole), or beside its siblings
        assert rel in text or rel.rsplit("/", 1)[0] + "/" in text or path.name in text, rel


def test_the_health_table_matches_the_flux_expressions():
    ks = [k for k in _docs(GITOPS / "flux" / "kustomizations.yaml") if k["spec"].get("healthCheckExprs")]
    assert len(ks) == 1
    text = DOC.read_text()
    for e in ks[0]["spec"]["healthCheckExprs"]:
        assert "Stalled' && c.status == 'True'" in e["failed"] and "`failed` = `Stalled=True`" in text
        assert "Stalled' && c.status == 'False'" in e["current"] and "observedGeneration == metadata.generation" in e["current"]
