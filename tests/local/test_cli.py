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
    assert r.stdout.count("ok ") == 10


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


def _operator_config(path, **extra):
    """An operator config file as the chart renders it (top-level `images` marks it as one)."""
    from vlmops.builders import BuildContext

    path.write_text(yaml.safe_dump({"images": BuildContext().images, **extra}))
    return str(path)


def test_validate_with_the_operators_config_applies_the_clusters_policy(tmp_path):
    config = _operator_config(tmp_path / "config.yaml", policy={"maxShards": 64, "maxNodes": 8, "maxGpus": 64})
    r = vlmops("validate", "-f", "examples/llava-ov-1.5/", "--config", config)
    assert r.returncode == 1
    assert "spec.nodes: 16 nodes exceed this cluster's limit of 8 (chart value policy.maxNodes)" in r.stdout
    assert vlmops("validate", "-f", "examples/llava-ov-1.5/").returncode == 0
    r = vlmops("validate", "-f", "examples/llava-ov-1.5/", "--config", str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.startswith("error: --config") and "no such file" in r.stderr


def test_validate_with_helm_values_applies_the_charts_policy_over_its_defaults(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"policy": {"maxNodes": 8, "allowOverrides": ["storage", "scheduling", "volumes",
                                                                                     "volumeMounts"]}}))
    r = vlmops("validate", "-f", "examples/llava-ov-1.5/", "--config", str(values))
    assert r.returncode == 1 and "exceed this cluster's limit of 8 (chart value policy.maxNodes)" in r.stdout
    # the chart's own defaults apply too: maxGpus 1024 is not exceeded, images must come from its registry
    assert "maxGpus" not in r.stdout and "registry" not in r.stdout


def _relative_eval(tmp_path):
    """The recipe as a cluster with the chart's default policy takes it: its EvalSuite writing to a
    relative location, tokenizers in object storage (a local path lies outside any storage policy)."""
    out = tmp_path / "recipe"
    out.mkdir()
    for f in (REPO / "examples" / "llava-ov-1.5").glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        for d in docs:
            if d["kind"] == "EvalSuite":
                d["spec"]["output"]["uri"] = "evals/stage-2/"
            if "tokenizer" in d["spec"]:
                d["spec"]["tokenizer"] = "s3://vlm-models/Qwen3-8B-Base/"
            d["spec"].pop("storage", None)  # the chart's storage applies (a CR's own is off by default)
        (out / f.name).write_text(yaml.safe_dump_all(docs))
    return str(out)


def test_validate_resolves_relative_locations_as_the_operator_does(tmp_path):
    cr = _relative_eval(tmp_path) + "/20-eval.yaml"
    with_prefix = _operator_config(tmp_path / "a.yaml", storagePrefix="s3://vlm-eval/team",
                                   policy={"storagePrefixes": ["s3://vlm-eval/team"]})
    r = vlmops("validate", "-f", cr, "--config", with_prefix)
    assert r.returncode == 0, r.stdout  # joined onto the prefix, so inside the allowed storage
    r = vlmops("validate", "-f", cr, "--config", _operator_config(tmp_path / "b.yaml"))
    assert r.returncode == 1 and "spec.output.uri: relative location 'evals/stage-2/' needs a storage prefix" in r.stdout


def test_render_with_values_uses_the_charts_defaults(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "jobs": {"images": {"registry": "registry.example/ml", "tag": "1.2.3"}, "serviceAccountName": "vlm-jobs",
                 "storage": {"prefix": "s3://vlm-eval/team"}},
        "policy": {"extraStoragePrefixes": ["s3://"]}}))
    recipe = _relative_eval(tmp_path)
    r = vlmops("render", "-f", recipe, "--config", str(values))
    assert r.returncode == 0, r.stderr
    (job,) = [d for d in yaml.safe_load_all(r.stdout) if d and d["metadata"]["name"] == "stage-2-eval-eval-g1"]
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/ml/vlmops-eval:1.2.3"
    assert pod["serviceAccountName"] == "vlm-jobs"
    assert "s3://vlm-eval/team/evals/stage-2" in yaml.safe_dump(job)
    r = vlmops("render", "-f", recipe)  # no prefix: what the operator would refuse
    assert r.returncode == 1 and "EvalSuite/stage-2-eval: spec.output.uri: relative location" in r.stderr


def test_render_config_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"jobs": {"images": {"registry": ""}}}))
    r = vlmops("render", "-f", "examples/llava-ov-1.5/", "--config", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("error: --config") and "jobs.images.registry" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    config = _operator_config(tmp_path / "config.yaml")
    r = vlmops("render", "-f", "examples/llava-ov-1.5/", "--config", config, "--config", str(bad))
    assert r.returncode == 2 and "operator's config file: give it alone" in r.stderr
    unknown = _operator_config(tmp_path / "unknown.yaml", imagez={})
    r = vlmops("render", "-f", "examples/llava-ov-1.5/", "--config", unknown)
    assert r.returncode == 2 and "unknown key(s) imagez" in r.stderr
