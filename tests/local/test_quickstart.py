"""The README's first command, end to end: the quickstart pipeline on the local runner.

One real run of the whole pipeline (BC -> PDS -> 3 stages -> EvalSuite -> RL stage -> EvalSuite), interrupted once after
the data steps and resumed, then re-run to check that finished CRs are not redone.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
QS = REPO / "examples" / "quickstart"


def _env():
    return {**os.environ, "PYTHONPATH": f"{REPO}/operator:{REPO}/jobs", "OMP_NUM_THREADS": "1"}


def vlmops(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vlmops", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, **kw)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("qs")
    r = subprocess.run([sys.executable, str(QS / "generate.py"), "--out", str(wd / "storage/quickstart/data")],
                       env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return wd


def _processes_using(wd: Path) -> list[int]:
    """PIDs of processes started for this workdir (pods carry their termination-log path in env)."""
    found = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if str(wd).encode() in env.read_bytes():
                found.append(int(env.parent.name))
        except OSError:
            continue
    return found


def _crs(wd: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["metadata"]["name"]: json.loads(p.read_text())
            for p in (wd / "state" / "crs").glob("*.json")}


def test_bad_spec_stops_before_anything_starts(tmp_path):
    docs = list(yaml.safe_load_all((QS / "pipeline.yaml").read_text()))
    docs[2]["spec"]["parallelism"] = {"tensor": 3}  # 2 ranks, TP=3
    docs[4]["spec"]["trainable"] = ["decoder"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    r = vlmops("run", "-f", str(bad), "--workdir", str(tmp_path / "wd"))
    assert r.returncode == 2
    assert "nothing was started" in r.stderr
    assert "VLMTrainingStage/qs-stage-1" in r.stderr and "divisible by tensor" in r.stderr
    assert "spec.trainable.0" in r.stderr
    assert not list((tmp_path / "wd" / "state" / "crs").glob("*.json"))


def test_an_unknown_reference_is_reported(tmp_path):
    docs = list(yaml.safe_load_all((QS / "pipeline.yaml").read_text()))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs[2:3]))  # a stage without its PackedDataset
    r = vlmops("run", "-f", str(bad), "--workdir", str(tmp_path / "wd"))
    assert r.returncode == 2 and "PackedDataset/qs-packed, which is not defined" in r.stderr


def test_quickstart_interrupted_resumed_and_idempotent(workdir):
    wd = workdir
    # 1. Start the pipeline, kill it as soon as the first training stage starts.
    proc = subprocess.Popen([sys.executable, "-m", "vlmops", "run", "-f", str(QS), "--workdir", str(wd)],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if list((wd / "logs").glob("qs-stage-1/*.log")):
            break
        if proc.poll() is not None:
            pytest.fail("runner exited early:\n" + proc.stdout.read())
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)  # like `kill`, a CI timeout, or a closed terminal
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again to resume" in out
    assert _processes_using(wd) == [], "the runner left pods running"
    crs = _crs(wd)
    assert crs["qs-balanced"]["status"]["phase"] == "Ready"
    assert crs["qs-packed"]["status"]["phase"] == "Ready"
    # The killed stage was recorded as running (child created, then executed), like in a cluster.
    assert crs["qs-stage-1"]["status"]["phase"] == "Running"
    data_children = sorted(p for p in (wd / "state" / "children").glob("Job.qs-*.json")
                           if p.name.startswith(("Job.qs-balanced", "Job.qs-packed")))
    mtimes = {p: p.stat().st_mtime for p in data_children}

    # 2. Run again: the data CRs are not redone, the rest completes.
    r = vlmops("run", "-f", str(QS), "--workdir", str(wd), timeout=1500)
    assert r.returncode == 0, r.stdout + r.stderr[-5000:]
    assert "qs-balanced: already Ready" in r.stderr and "qs-packed: already Ready" in r.stderr
    for p, m in mtimes.items():
        assert p.stat().st_mtime == m, f"{p.name} was re-run"
    crs = _crs(wd)
    for name in ("qs-stage-1", "qs-stage-1-5", "qs-stage-2", "qs-eval", "qs-rl", "qs-rl-eval"):
        assert crs[name]["status"]["phase"] == "Succeeded", (name, crs[name]["status"].get("message"))
    assert len(data_children) == 6  # 2 BC + 4 PDS children were recorded before the kill

    # Statuses carry the jobs' results.
    bc = crs["qs-balanced"]["status"]["stats"]
    assert bc["inputSamples"] == 400 and 0 < bc["selectedSamples"] <= 400
    assert bc["after"]["entropyBits"] >= bc["before"]["entropyBits"]
    pds = crs["qs-packed"]["status"]["stats"]
    assert pds["samples"] == bc["selectedSamples"] - pds["droppedTooLong"]
    assert pds["sequences"] >= pds["lowerBoundSequences"]
    assert crs["qs-stage-2"]["status"]["progress"]["step"] == 24
    ev = crs["qs-eval"]["status"]
    assert ev["total"] == 1 and ev["passed"] == 1, ev  # exact_match >= 0.75: the trained model names colours
    assert {r_["task"] for r_ in ev["results"]} == {"quickstart_colours"}

    # The RL stage: prompts selected by the discrepancy rule from the Stage-2 policy's samples, GRPO steps,
    # its export evaluated; the selection and the stage's lineage name the policy they came from.
    rl, stage2 = crs["qs-rl"]["status"], crs["qs-stage-2"]["status"]
    sel = rl["selection"]
    assert sel["prompts"] == 16 and 0 < sel["selected"] == sel["verdicts"]["kept"] < 16, sel
    assert sel["policy"]["uri"] == stage2["hf"] and sel["policy"]["identity"] == stage2["output"]["identity"]
    assert [p["step"] for p in rl["curve"]] == [1, 2, 3, 4] and rl["progress"]["step"] == 4
    rl_manifest = json.loads(Path(rl["output"]["manifest"].removeprefix("file://")).read_text())
    sel_manifest = json.loads(Path(sel["manifest"].removeprefix("file://")).read_text())
    for m in (rl_manifest, sel_manifest):
        assert m["inputs"]["policy"]["identity"] == stage2["output"]["identity"]
    assert crs["qs-rl-eval"]["status"]["passed"] == 1  # the RL policy's export still passes the gate
    r = vlmops("lineage", "qs-rl-eval", "--workdir", str(wd))
    assert r.returncode == 0
    names = re.findall(r"(\w+)/([\w-]+) \[", r.stdout)
    assert names[:3] == [("EvalSuite", "qs-rl-eval"), ("VLMRLStage", "qs-rl"), ("VLMTrainingStage", "qs-stage-2")]

    # 3. The report shows the statuses' numbers; lineage walks back to the corpus.
    report = (wd / "report.html").read_text()
    assert f"{pds['samples']} samples -&gt; {pds['sequences']} seqs" in report
    assert "<h3>reward curve</h3>" in report and f"{sel['selected']} of 16 prompts kept" in report
    assert re.search(rf"samples {bc['selectedSamples']}/400", report)
    r = vlmops("lineage", "qs-eval", "--workdir", str(wd))
    assert r.returncode == 0
    names = re.findall(r"(\w+)/([\w-]+) \[", r.stdout)
    assert names[0] == ("EvalSuite", "qs-eval") and ("BalancedCorpus", "qs-balanced") in names

    assert _processes_using(wd) == [], "jobs left helper processes behind"

    # 4. A third run changes nothing.
    before = {p: p.stat().st_mtime for p in (wd / "state").rglob("*.json")}
    r = vlmops("run", "-f", str(QS), "--workdir", str(wd), "--no-report")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("already") == 8
    assert {p: p.stat().st_mtime for p in (wd / "state").rglob("*.json")} == before

    # 5. The gate can fail: the same EvalSuite on the same architecture and processor with untrained weights.
    untrained = _untrained_copy(wd / "storage/quickstart/ckpt/stage-2/output/hf", wd / "untrained-hf")
    evs = next(d for d in yaml.safe_load_all((QS / "pipeline.yaml").read_text()) if d["kind"] == "EvalSuite")
    evs["metadata"]["name"] = "qs-eval-untrained"
    evs["spec"].update(model={"checkpoint": f"file://{untrained}"}, output={"uri": "quickstart/eval-untrained"})
    f = wd / "untrained.yaml"
    f.write_text(yaml.safe_dump(evs))
    r = vlmops("run", "-f", str(f), "--workdir", str(wd), timeout=900)
    assert r.returncode != 0, r.stdout + r.stderr[-3000:]
    bad = _crs(wd)["qs-eval-untrained"]["status"]
    assert bad["phase"] == "Failed" and bad["passed"] == 0 and bad["total"] == 1, bad
    assert bad["failing"][0].startswith("quickstart_colours/exact_match: 0 < 0.75"), bad["failing"]


def _untrained_copy(hf: Path, dest: Path) -> Path:
    """The export with its weights re-initialised (normal(0, 0.02); norms 1, biases 0)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(hf, dest)
    g = torch.Generator().manual_seed(0)
    for path in sorted(dest.glob("*.safetensors")):
        tensors = load_file(path)
        for name, t in tensors.items():
            if t.dim() == 1:
                tensors[name] = torch.ones_like(t) if name.endswith("weight") else torch.zeros_like(t)
            else:
                tensors[name] = (torch.randn(t.shape, generator=g) * 0.02).to(t.dtype)
        save_file(tensors, path, metadata={"format": "pt"})
    return dest
