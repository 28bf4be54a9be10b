"""Builders and jobs agree: every command a builder puts in a child parses with that job's own
argument parser (the command line is the contract between operator and jobs)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from vlmops.kinds import build
from vlmops.kinds import planned_status
from vlmops.manifests import with_defaults

REPO = Path(__file__).resolve().parents[2]


def _docs(example: str):
    out = []
    for f in sorted((REPO / "examples" / example).glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def _explicit_model_stage():
    stage = copy.deepcopy(next(d for d in _docs("llava-ov-1.5") if d["kind"] == "VLMTrainingStage"))
    stage["metadata"]["name"] = "explicit"
    stage["spec"]["model"] = {
        "vision": {"numLayers": 4, "hiddenSize": 256, "numAttentionHeads": 4, "patchSize": 14},
        "language": {"numLayers": 4, "hiddenSize": 512, "numAttentionHeads": 8, "numQueryGroups": 2,
                     "headDim": 128, "ropeBase": 5000000.0, "tieEmbeddings": True, "ffnHiddenSize": 1024,
                     "vocabSize": 32000}}
    stage["spec"]["parallelism"] = {"tensor": 2, "recompute": "selective"}
    return stage


def _commands():
    docs = _docs("llava-ov-1.5") + _docs("quickstart") + [_explicit_model_stage()]
    objs = {(d["kind"], d["metadata"]["name"]): with_defaults(d) for d in docs}
    ready = {k: {**o, "status": planned_status(o)} for k, o in objs.items()}
    for key, obj in objs.items():
        for step in build(obj, ready).steps:
            spec = step.manifest["spec"]
            template = spec.get("template") or spec["pytorchReplicaSpecs"]["Master"]["template"]
            cmd = template["spec"]["containers"][0]["command"]
            yield f"{key[1]}/{step.name}", cmd


def _parse(cmd: list[str]):
    """Parse a built command with the job's own parser (`vlmops_jobs.<job>.JOB`, the CLI every job shares)."""
    import importlib

    module = cmd[cmd.index("-m") + 1]
    args = cmd[cmd.index("-m") + 2:]
    job = importlib.import_module(module).JOB
    if len(job.steps) == 1:
        return job.parser(job.steps[0]).parse_args(args)
    assert args[0] in job.steps, f"{module}: unknown step {args[0]}"
    return job.parser(args[0]).parse_args(args[1:])


CASES = dict(_commands())


@pytest.mark.parametrize("name", sorted(CASES))
def test_builder_command_parses_with_the_job(name):
    ns = _parse(CASES[name])
    assert ns is not None


def test_training_arguments_survive_the_jobs_parser():
    from vlmops_contract.model_shapes import preset_from_model_json
    cmd = CASES["explicit/train"]
    ns = _parse(cmd)
    assert ns.tensor == 2 and ns.recompute == "selective" and ns.model_json
    preset = preset_from_model_json(ns.model_json)
    assert preset.language.num_heads == 8 and preset.language.num_query_groups == 2
    assert preset.vision.patch == 14 and preset.vision.merge == 2 and preset.vision.ffn_hidden_size == 1024
    assert (preset.language.head_dim, preset.language.rope_base, preset.language.tie_embeddings) == (128, 5e6, True)
    ns = _parse(CASES["stage-1-5-mid-training/train"])
    assert ns.preset == "llava-ov-1.5-8b" and ns.global_batch == 112 and ns.train_iters == 70000
    assert ns.init_from == "s3://vlm-ckpt/llava-ov-1.5-8b/stage-1/"


def _training_stages():
    docs = _docs("llava-ov-1.5") + _docs("quickstart") + [_explicit_model_stage()]
    return {d["metadata"]["name"]: with_defaults(d) for d in docs if d["kind"] == "VLMTrainingStage"}


@pytest.mark.parametrize("name", sorted(_training_stages()))
def test_every_example_stage_passes_the_jobs_own_start_checks(name):
    """Admission == the job's start: what `vlmops validate` accepts, the trainer accepts on the world
    size the PyTorchJob will have (so no stage waits for its GPUs only to exit 2)."""
    from vlmops.kinds import KINDS
    from vlmops_jobs.train.trainer import validate

    obj = _training_stages()[name]
    KINDS["VLMTrainingStage"].spec.model_validate(obj["spec"])  # vlmops validate's check
    ns = _parse(CASES[f"{name}/train"])
    validate(ns, obj["spec"]["nodes"] * obj["spec"]["gpusPerNode"])
