"""Identity digests, `vlmops lineage --verify` and `vlmops diff` on hand-made outputs (fast; the
quickstart-scale checks are in test_reproducibility.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vlmops_contract.identity import identity_of, tree_digest

from vlmops import lineage
from vlmops_jobs.common import lineage as job_lineage
from vlmops_jobs.common import storage

REPO = Path(__file__).resolve().parents[2]


def _manifest(inputs, parameters, files, locations=None, stats=None):
    return job_lineage.build_manifest(kind="PackedDataset", step="write", inputs=inputs, parameters=parameters,
                                      files=files, stats=stats, locations=locations)


def test_identity_ignores_locations_and_stats_and_sees_content_parameters_code():
    a = _manifest({"source": {"uri": "/a/src.parquet", "digest": "sha256:1"}}, {"sequenceLength": 1024},
                  {"shards/shard-0.tar": "sha256:2"}, locations={"imageRoot": "/a"}, stats={"seconds": 1})
    b = _manifest({"source": {"uri": "s3://b/src.parquet", "digest": "sha256:1"}}, {"sequenceLength": 1024},
                  {"shards/shard-0.tar": "sha256:2"}, locations={"imageRoot": "s3://b"}, stats={"seconds": 9})
    assert a["identity"] == b["identity"] == identity_of(a)
    assert a["code"]["tree"].startswith("sha256:") and a["environment"]["packages"].startswith("sha256:")
    for change in ({"inputs": {"source": {"uri": "/a/src.parquet", "digest": "sha256:3"}}},
                   {"parameters": {"sequenceLength": 768}}, {"files": {"shards/shard-0.tar": "sha256:4"}},
                   {"code": {**a["code"], "tree": "sha256:5"}}, {"environment": {"packages": "sha256:6"}}):
        assert identity_of({**a, **change}) != a["identity"], change
    # informational fields stay outside identity
    assert identity_of({**a, "code": {**a["code"], "commit": "abc"}, "environment": {**a["environment"],
                                                                                   "image": "x:1"}}) == a["identity"]


def test_a_directory_digest_is_its_content_wherever_it_is(tmp_path):
    for root in ("x", "y"):
        d = tmp_path / root / "tok"
        (d / ".cache").mkdir(parents=True)
        (d / "tokenizer.json").write_text("{}")
        (d / "chat_template.jinja").write_text("{{ m }}")
        (d / ".cache" / "junk").write_text(root)  # dot-entries are left out
    x, y = (job_lineage.tree_digest(str(tmp_path / r / "tok")) for r in ("x", "y"))
    assert x == y == lineage.content_digest(f"file://{tmp_path}/y/tok")
    assert x == tree_digest({"chat_template.jinja": storage.sha256_bytes(b"{{ m }}"),
                             "tokenizer.json": storage.sha256_bytes(b"{}")})
    (tmp_path / "y" / "tok" / "chat_template.jinja").write_text("changed")
    assert job_lineage.tree_digest(str(tmp_path / "y" / "tok")) != x


def _workdir(tmp_path: Path, name: str, seq: int, shard: bytes) -> Path:
    """A local-runner workdir with two committed outputs: raw source -> packed (-> by identity) -> stage."""
    wd = tmp_path / name
    (wd / "state" / "crs").mkdir(parents=True)
    store = wd / "storage"
    (store / "data").mkdir(parents=True)
    (store / "data" / "src.parquet").write_bytes(b"rows")
    packed, stage = store / "packed", store / "stage"
    (packed / "shards").mkdir(parents=True)
    (packed / "shards" / "shard-0.tar").write_bytes(shard)
    pm = _manifest({"source": [{"uri": str(store / "data" / "src.parquet"), "digest": storage.sha256_bytes(b"rows")}]},
                   {"sequenceLength": seq}, {"shards/shard-0.tar": storage.sha256_bytes(shard)},
                   locations={"source": str(store / "data")})
    storage.write_json_atomic(str(packed / "manifest.json"), pm)
    stage.mkdir()
    (stage / "model.safetensors").write_bytes(b"w" + shard)
    sm = job_lineage.build_manifest(kind="VLMTrainingStage", step="train", parameters={"lr": 1e-3},
                                    inputs={"data": {"uri": str(packed), "manifest": str(packed / "manifest.json"),
                                                     "digest": pm["identity"]}},
                                    files={"model.safetensors": storage.sha256_bytes(b"w" + shard)})
    storage.write_json_atomic(str(stage / "manifest.json"), sm)
    for kind, cr, out in (("PackedDataset", "p", packed), ("VLMTrainingStage", "s", stage)):
        (wd / "state" / "crs" / f"{kind}.{cr}.json").write_text(json.dumps({
            "kind": kind, "metadata": {"name": cr},
            "status": {"phase": "Ready", "output": {"uri": str(out), "manifest": str(out / "manifest.json")}}}))
    return wd


def _vlmops(*args):
    env = {"PYTHONPATH": f"{REPO}/operator:{REPO}/jobs", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "vlmops", *args], cwd=REPO, env=env, capture_output=True, text=True)


def test_lineage_follows_content_to_the_raw_input_and_verify_names_a_changed_file(tmp_path):
    wd = _workdir(tmp_path, "a", 1024, b"shard")
    r = _vlmops("lineage", "s", "--workdir", str(wd), "--verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VLMTrainingStage/s [train]" in r.stdout and "data: PackedDataset/p [write]" in r.stdout
    assert "source[0]: sha256:" in r.stdout and "src.parquet" in r.stdout
    assert "verify: 5 digests checked, 0 mismatch(es)" in r.stdout  # 2 identities, 2 files, 1 raw input
    doc = json.loads(_vlmops("lineage", "s", "--workdir", str(wd), "--json").stdout)
    assert doc["inputs"][0]["cr"] == "p" and doc["inputs"][0]["inputs"][0]["name"] == "source[0]"

    shard = wd / "storage" / "packed" / "shards" / "shard-0.tar"
    shard.write_bytes(b"shard!")  # one byte more
    r = _vlmops("lineage", "s", "--workdir", str(wd), "--verify")
    assert r.returncode == 1
    assert f"MISMATCH {shard}: sha256" in r.stdout
    (wd / "storage" / "data" / "src.parquet").write_bytes(b"rowz")
    assert "src.parquet: digest" in _vlmops("lineage", "s", "--workdir", str(wd), "--verify").stdout
    assert _vlmops("lineage", "nope", "--workdir", str(wd)).returncode == 2


def test_diff_names_what_differs_between_two_runs(tmp_path):
    a = _workdir(tmp_path, "a", 1024, b"shard")
    b = _workdir(tmp_path, "b", 1024, b"shard")   # elsewhere, same content
    c = _workdir(tmp_path, "c", 768, b"other")    # one parameter changed upstream
    r = _vlmops("diff", "--workdir", str(a), "--workdir-b", str(b))
    assert r.returncode == 0 and r.stdout.count("same identity") == 2, r.stdout
    r = _vlmops("diff", "--workdir", str(a), "--workdir-b", str(c), "--json")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert "parameter sequenceLength: 1024 -> 768" in d["p"]
    assert any(x.startswith("input data: sha256:") for x in d["s"]) and any(x.startswith("files (1)") for x in d["s"])
    assert _vlmops("diff", "--workdir", str(a)).returncode == 2  # nothing to compare
