"""Reproducible by construction: the quickstart's chain (balance -> pack -> two stages, the second
initialised from the first -> eval) run in two workdirs gives equal identities for every output; a
third run with the packing sequence length changed changes exactly the identities downstream of it,
which `vlmops diff` names; `vlmops lineage --verify` passes and names a packed shard changed by one byte.
The three runs go at once (independent workdirs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
QS = REPO / "examples" / "quickstart"
CHAIN = ("qs-balanced", "qs-packed", "qs-stage-1", "qs-stage-1-5", "qs-eval")


def _env():
    return {**os.environ, "PYTHONPATH": f"{REPO}/operator:{REPO}/jobs", "OMP_NUM_THREADS": "1"}


def vlmops(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vlmops", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, **kw)


def _pipeline(sequence_length: int) -> list[dict]:
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all((QS / "pipeline.yaml").read_text())}
    docs["qs-packed"]["spec"]["sequenceLength"] = sequence_length
    docs["qs-stage-1-5"]["spec"]["trainIters"] = 2
    ev = docs["qs-eval"]["spec"]
    ev["model"] = {"trainingStage": "qs-stage-1-5"}
    ev["thresholds"] = {"quickstart_colours/exact_match": 0.0}  # identities are the point here, not the gate
    return [docs[n] for n in CHAIN]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Workdirs a and b (same specs, different places), c (sequenceLength 768), run concurrently."""
    procs, wds = {}, {}
    for name, seq in (("a", 1024), ("b", 1024), ("c", 768)):
        wd = tmp_path_factory.mktemp(f"repro-{name}")
        r = subprocess.run([sys.executable, str(QS / "generate.py"), "--out", str(wd / "storage/quickstart/data")],
                           env=_env(), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        (wd / "pipeline.yaml").write_text(yaml.safe_dump_all(_pipeline(seq)))
        wds[name] = wd
        procs[name] = subprocess.Popen([sys.executable, "-m", "vlmops", "run", "-f", str(wd / "pipeline.yaml"),
                                        "--workdir", str(wd), "--no-report"], cwd=REPO, env=_env(),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       start_new_session=True)
    try:
        for name, p in procs.items():
            out, _ = p.communicate(timeout=1800)
            assert p.returncode == 0, f"run {name}:\n{out[-5000:]}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, 9)
    return wds


def _status(wd: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["metadata"]["name"]: json.loads(p.read_text())["status"]
            for p in (wd / "state" / "crs").glob("*.json")}


def test_two_workdirs_give_equal_identities_for_every_output(runs):
    a, b = _status(runs["a"]), _status(runs["b"])
    for name in CHAIN:
        ia, ib = a[name]["output"]["identity"], b[name]["output"]["identity"]
        assert ia and ia == ib, name
        assert a[name]["output"]["uri"] != b[name]["output"]["uri"]  # stored elsewhere
    r = vlmops("diff", "--workdir", str(runs["a"]), "--workdir-b", str(runs["b"]))
    assert r.returncode == 0 and r.stdout.count("same identity") == len(CHAIN), r.stdout


def test_a_changed_sequence_length_changes_exactly_what_is_downstream_and_diff_names_it(runs):
    a, c = _status(runs["a"]), _status(runs["c"])
    assert a["qs-balanced"]["output"]["identity"] == c["qs-balanced"]["output"]["identity"]
    for name in CHAIN[1:]:
        assert a[name]["output"]["identity"] != c[name]["output"]["identity"], name
    r = vlmops("diff", "--workdir", str(runs["a"]), "--workdir-b", str(runs["c"]), "--json")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["qs-balanced"] == []
    assert "parameter sequenceLength: 1024 -> 768" in d["qs-packed"]
    assert not any(x.startswith(("parameter", "input source", "input tokenizer")) for x in d["qs-packed"]
                   if "sequenceLength" not in x)
    assert any(x.startswith("input data:") for x in d["qs-stage-1"])
    assert {x.split(":")[0] for x in d["qs-stage-1-5"] if x.startswith("input")} == {"input data", "input initFrom"}
    assert any(x.startswith("input model:") for x in d["qs-eval"])


def test_lineage_verify_reaches_the_raw_inputs_and_names_a_changed_shard(runs):
    wd = runs["a"]
    r = vlmops("lineage", "qs-eval", "--workdir", str(wd), "--verify")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    out = r.stdout
    for what in ("EvalSuite/qs-eval", "model: VLMTrainingStage/qs-stage-1-5", "initFrom: VLMTrainingStage/qs-stage-1",
                 "data: PackedDataset/qs-packed", "source: BalancedCorpus/qs-balanced"):
        assert what in out, what
    for raw in ("samples.parquet", "concepts.parquet", "data/tokenizer", "eval-tasks"):
        assert raw in out, raw
    assert "0 mismatch(es)" in out
    shard = next((wd / "storage/quickstart/packed/shards").glob("*.tar"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    r = vlmops("lineage", "qs-eval", "--workdir", str(wd), "--verify")
    assert r.returncode == 1 and f"MISMATCH {shard}: sha256" in r.stdout, r.stdout[-3000:]
