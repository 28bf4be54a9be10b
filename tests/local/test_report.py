"""report.html from a hand-made workdir (the quickstart's CRs with finished statuses, a plot and
training logs; nothing runs): self-contained (images embedded, no file:// or absolute paths,
links relative to the report), status values as tables, lineage as a tree with each CR once."""
from __future__ import annotations

import base64
import html
import json
import re
import shutil
from pathlib import Path

import yaml

from vlmops.local.report import write_report
from vlmops.local.state import Workdir

REPO = Path(__file__).resolve().parents[2]
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _status(kind: str, name: str, store: Path) -> dict:
    out = store / name
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    st = {"phase": "Succeeded", "message": "1 step(s) completed",
          "output": {"uri": str(out), "manifest": str(out / "manifest.json"), "digest": "sha256:" + "ab" * 32,
                     "identity": "sha256:" + "cd" * 32}}
    if kind == "BalancedCorpus":
        (out / "plots").mkdir()
        (out / "plots" / "concept-frequency.png").write_bytes(PNG)
        st.update(phase="Ready", progress={"shardsCompleted": 2, "shardsTotal": 2}, stats={
            "inputSamples": 400, "selectedSamples": 301, "threshold": 13.945757,
            "before": {"conceptsCovered": 48, "entropyBits": 4.954682, "gini": 0.495382},
            "after": {"conceptsCovered": 48, "entropyBits": 5.249199, "gini": 0.380791}})
    elif kind == "PackedDataset":
        st.update(phase="Ready", stats={"samples": 301, "sequences": 21, "packingEfficiency": 0.953311,
                                        "compressionRatio": 14.3333, "droppedTooLong": 0})
    elif kind == "VLMTrainingStage":
        (out / "hf").mkdir()
        (out / "iter_0000006").mkdir()
        st.update(progress={"step": 6, "totalSteps": 6, "loss": 7.25}, hf=str(out / "hf"),
                  checkpoint={"latest": str(out / "iter_0000006"), "step": 6})
    else:
        st.update(results=[{"task": "colours", "metric": "exact_match", "value": 1.0}], passed=1, total=1)
    return st


def _workdir(root: Path) -> Workdir:
    wd = Workdir(root)
    for obj in yaml.safe_load_all((REPO / "examples" / "quickstart" / "pipeline.yaml").read_text()):
        kind, name = obj["kind"], obj["metadata"]["name"]
        obj["status"] = _status(kind, name, wd.storage)
        (wd.root / "state" / "crs" / f"{kind}.{name}.json").write_text(json.dumps(obj, sort_keys=True))
        if kind == "VLMTrainingStage":
            lines = [json.dumps({"step": s, "loss": 8.0 - s / 10}) for s in range(1, 7)]
            (wd.log_dir(name) / "rank0.log").write_text("\n".join(lines) + "\n")
    return wd


def _links(report: str) -> list[str]:
    return [html.unescape(x) for x in re.findall(r"""(?:href|src)=['"]([^'"]*)['"]""", report)]


def test_the_report_is_self_contained_and_its_links_are_relative(tmp_path):
    wd = _workdir(tmp_path / "work")
    report = write_report(wd).read_text()
    assert "file://" not in report and str(tmp_path) not in report
    links = _links(report)
    images = [x for x in links if x.startswith("data:")]
    assert len(images) == 2  # the loss curves and the corpus's plot, carried inside the file
    assert base64.b64decode(images[0].split(",", 1)[1]) == (wd.root / "loss-curves.png").read_bytes()
    assert base64.b64decode(images[1].split(",", 1)[1]) == PNG
    assert not re.search(r"<img src=['\"](?!data:image/png;base64,)", report)
    files = [x for x in links if not x.startswith(("#", "data:"))]
    assert files and not [x for x in files if x.startswith("/") or ":" in x], files
    assert "<a href='storage/qs-stage-1/iter_0000006'>" in report  # the checkpoint, relative to the report
    ids = set(re.findall(r"id='([^']+)'", report)) | set(re.findall(r"id=(\w+)>", report))
    assert {x[1:] for x in links if x.startswith("#")} <= ids  # every in-page link has its target
    # moved (workdir and report together): every link still resolves; the report alone keeps its images
    moved = tmp_path / "elsewhere"
    shutil.move(wd.root, moved)
    for x in files:
        assert (moved / x).exists(), x
    alone = tmp_path / "report.html"
    shutil.copy(moved / "report.html", alone)
    assert alone.read_text().count("data:image/png;base64,") == 2


def test_status_values_are_tables_not_json(tmp_path):
    report = write_report(_workdir(tmp_path / "work")).read_text()
    assert "<pre>" not in report and "&quot;" not in report and "{" not in report.split("</style>", 1)[1]
    for section in ("stats", "progress", "checkpoint", "output"):
        assert re.search(rf"<h3>{section}</h3><table>", report), section
    # before and after side by side, in that order, one row per statistic
    assert "<tr><th></th><th>before</th><th>after</th></tr>" in report
    assert "<tr><th>entropyBits</th><td class=num>4.95468</td><td class=num>5.2492</td></tr>" in report
    assert "<tr><th>selectedSamples</th><td class=num>301</td></tr>" in report
    # the status table keeps the `vlmops status` details
    assert "samples 301/400" in report and "301 samples -&gt; 21 seqs" in report


def test_lineage_is_one_tree_with_each_cr_once(tmp_path):
    wd = _workdir(tmp_path / "work")
    report = write_report(wd).read_text()
    lineage = report.split("<h2 id=lineage>Lineage</h2>", 1)[1]
    crs = [p.stem.split(".", 1) for p in (wd.root / "state" / "crs").glob("*.json")]
    for kind, name in crs:
        assert lineage.count(f"<li class=node id='lineage-{kind}-{name}'>") == 1, name
    # from the last product down: the eval, its stage, that stage's inputs...
    assert lineage.startswith("<ul class=tree><li class=node id='lineage-EvalSuite-qs-rl-eval'>")
    # the packed dataset is read by three stages: shown once, then twice a link back to it
    assert lineage.count("href='#lineage-PackedDataset-qs-packed'") == 2
    assert lineage.count("<li class=ref>") == 3  # and Stage-2, read by its eval and the RL stage
    assert lineage.index("id='lineage-BalancedCorpus-qs-balanced'") > lineage.index("id='lineage-PackedDataset-qs-packed'")
