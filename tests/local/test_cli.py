"""`vlmops validate` / `render` / `crds --check` as a user runs them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def vlmops(*args, cwd=REPO):
    env = {"PYTHONPATH": f"{REPO}/operator:{REPO}/jobs", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "vlmops", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_crds_check_passes_on_the_repo():
    r = vlmops("crds", "--check")
    assert r.returncode == 0, r.stderr


def test_crds_check_fails_on_drift(tmp_path):
    vlmops("crds", "--out", str(tmp_path))
    f = next(tmp_path.glob("*packeddatasets*"))
    f.write_text(f.read_text().replace("default: 8192", "default: 4096"))
    r = vlmops("crds", "--check", "--out", str(tmp_path))
    assert r.returncode == 1 and "packeddatasets" in r.stderr


def test_validate_accepts_the_recipe():
    r = vlmops("validate", "-f", "examples/llava-ov-1.5/")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("ok ") == 8


def test_validate_reports_every_error_with_its_path(tmp_path):
    bad = {
        "apiVersion": "vlmops.dev/v1alpha1", "kind": "VLMTrainingStage", "metadata": {"name": "s"},
        "spec": {
            "model": {"preset": "llava-ov-1.5-8b"}, "data": {"packedDataset": "p"}, "trainIters": 0,
            "checkpoint": {"uri": "s3://b/c"}, "initFrom": {"checkpoint": "s3://x", "huggingFace": "a/b"},
            "parallelism": {"tensor": 3}, "nodes": 1, "gpusPerNode": 8, "batch": {"micro": 2},
            "trainable": ["projector", "decoder"], "optimiser": {},
        },
    }
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = vlmops("validate", "-f", str(f))
    assert r.returncode == 1
    out = r.stdout
    assert "spec.trainIters" in out
    assert "spec.trainable.1" in out
    assert "optimiser" in out  # unknown field, named
    assert "spec.initFrom: exactly one of trainingStage, checkpoint, huggingFace must be set" in out


def test_validate_cross_field_rules_after_schema_passes(tmp_path):
    bad = {
        "apiVersion": "vlmops.dev/v1alpha1", "kind": "VLMTrainingStage", "metadata": {"name": "s"},
        "spec": {"model": {"preset": "llava-ov-1.5-8b"}, "data": {"packedDataset": "p"}, "trainIters": 5,
                 "checkpoint": {"uri": "s3://b/c"}, "parallelism": {"tensor": 3}, "nodes": 1, "gpusPerNode": 6},
    }
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = vlmops("validate", "-f", str(f))
    assert r.returncode == 1
    assert "spec.parallelism.tensor: must divide the model's attention heads" in r.stdout


def test_validate_reports_unreadable_input(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("a: [unclosed")
    r = vlmops("validate", "-f", str(f))
    assert r.returncode == 2 and "not valid YAML" in r.stderr
    r = vlmops("validate", "-f", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_render_recipe_prints_every_child():
    r = vlmops("render", "-f", "examples/llava-ov-1.5/")
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert [d["kind"] for d in docs].count("PyTorchJob") == 3
    names = [d["metadata"]["name"] for d in docs]
    assert len(names) == len(set(names))


def test_render_strict_inputs_shows_waiting():
    r = vlmops("render", "--strict-inputs", "-f", "examples/llava-ov-1.5/")
    assert r.returncode == 0, r.stderr
    assert "# VLMTrainingStage/stage-2-instruct: waiting for" in r.stdout
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert "PyTorchJob" not in [d["kind"] for d in docs]  # no stage has a Ready dataset yet


def test_eval_compare_answers_help_and_reports_bad_input_as_the_job_does():
    r = vlmops("eval", "compare", "--help")
    assert r.returncode == 0 and "--reference" in r.stdout, r.stderr
    r = vlmops("eval", "compare", "ref:llava-ov-1.5-400b", "ref:llava-ov-1.5-8b")
    assert r.returncode == 2 and r.stderr.strip().startswith("error:"), r.stderr


def test_validate_with_the_operators_config_applies_the_clusters_policy(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"policy": {"maxShards": 64, "maxNodes": 8, "maxGpus": 64}}))
    r = vlmops("validate", "-f", "examples/llava-ov-1.5/", "--config", str(config))
    assert r.returncode == 1
    assert "spec.nodes: 16 nodes exceed this cluster's limit of 8 (chart value policy.maxNodes)" in r.stdout
    assert vlmops("validate", "-f", "examples/llava-ov-1.5/").returncode == 0
    assert vlmops("validate", "-f", "examples/llava-ov-1.5/", "--config", str(tmp_path / "nope")).returncode == 2
