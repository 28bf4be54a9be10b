"""The CRDs' CEL rules mean what the pydantic checks mean: evaluate the CEL text with a CEL engine
(cel-python) on defaulted specs, the way the API server does, and compare with pydantic."""
from __future__ import annotations

import copy

import celpy
import pytest
import yaml
from pydantic import ValidationError

from vlmops.kinds import KINDS
from vlmops_contract.stage_checks import (CELL_MESSAGE, GROUPS_MESSAGE, HEAD_DIM_MESSAGE, TP_MESSAGE,
                                          VISION_HEADS_MESSAGE)
from vlmops.crdgen import crd
from vlmops.manifests import with_defaults

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_ENV = celpy.Environment()


def cel_failures(kind: str, spec: dict) -> list[str]:
    """Messages of every CEL rule that fails on `spec` (walking the schema like the API server)."""
    schema = crd(KINDS[kind].api)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    out: list[str] = []

    def walk(node: dict, value) -> None:
        if value is None:
            return
        for r in node.get("x-kubernetes-validations", []):
            ok = _ENV.program(_ENV.compile(r["rule"])).evaluate({"self": celpy.json_to_cel(value)})
            if not bool(ok):
                out.append(r["message"])
        if isinstance(value, dict):
            for k, sub in (node.get("properties") or {}).items():
                walk(sub, value.get(k))

    walk(schema, spec)
    return out


def pydantic_failures(kind: str, spec: dict) -> list[str]:
    try:
        KINDS[kind].spec.model_validate(spec)
        return []
    except ValidationError as e:
        return [m for err in e.errors() for m in err["msg"].removeprefix("Value error, ").split("; ")]


def _examples():
    for d in ("llava-ov-1.5", "quickstart"):
        for f in sorted((REPO / "examples" / d).glob("*.yaml")):
            yield from (o for o in yaml.safe_load_all(f.read_text()) if o)


def _stage():
    return next(with_defaults(o) for o in _examples() if o["kind"] == "VLMTrainingStage"
                and o["metadata"]["name"] == "stage-1-5-mid-training")


def _kind(kind):
    return next(with_defaults(o) for o in _examples() if o["kind"] == kind)


def test_every_example_passes_both_cel_and_pydantic():
    for obj in _examples():
        spec = with_defaults(obj)["spec"]
        assert cel_failures(obj["kind"], spec) == [] == pydantic_failures(obj["kind"], spec)


def _mut(obj, fn):
    obj = copy.deepcopy(obj)
    fn(obj["spec"])
    return obj["kind"], obj["spec"]


def _explicit(vision=None, language=None, projector=None):
    """A TP=1 stage with small explicit model blocks, `vision`/`language`/`projector` overriding fields."""
    model = {"vision": {"numLayers": 2, "hiddenSize": 64, "numAttentionHeads": 4, **(vision or {})},
             "language": {"numLayers": 2, "hiddenSize": 64, "numAttentionHeads": 4, "ffnHiddenSize": 128,
                          "vocabSize": 100, **(language or {})}}
    if projector:
        model["projector"] = projector
    return _mut(_stage(), lambda s: s.update(model=model, parallelism={**s["parallelism"], "tensor": 1}, nodes=1,
                                             gpusPerNode=8, batch={"global": 8, "micro": 1}))


CASES = {
    "initFrom two options": (lambda: _mut(_stage(), lambda s: s.update(initFrom={"checkpoint": "s3://a", "huggingFace": "x/y"})),
                             "exactly one of trainingStage, checkpoint, huggingFace must be set"),
    "world size": (lambda: _mut(_stage(), lambda s: s.update(nodes=1, gpusPerNode=6, parallelism={**s["parallelism"], "tensor": 4})),
                   "spec.parallelism: world size (nodes*gpusPerNode) must be divisible by tensor*pipeline*context"),
    "global batch vs DP": (lambda: _mut(_stage(), lambda s: s.update(parallelism={**s["parallelism"], "tensor": 1})),
                           "spec.batch.global: must be a positive multiple of the data-parallel size "
                           "(nodes*gpusPerNode / (tensor*pipeline*context))"),
    "pipeline": (lambda: _mut(_stage(), lambda s: s["parallelism"].update(pipeline=2)),
                 "spec.parallelism.pipeline: pipeline parallelism is not supported yet (use 1)"),
    "context": (lambda: _mut(_stage(), lambda s: s["parallelism"].update(context=2)),
                "spec.parallelism.context: context parallelism is not supported yet (use 1)"),
    "sequence parallel": (lambda: _mut(_stage(), lambda s: s["parallelism"].update(sequenceParallel=True)),
                          "spec.parallelism.sequenceParallel: not supported yet (needs the Transformer Engine layer path)"),
    "vision heads": (lambda: _explicit(vision={"hiddenSize": 96, "numAttentionHeads": 16}), VISION_HEADS_MESSAGE),
    "query groups": (lambda: _explicit(language={"numQueryGroups": 3}), GROUPS_MESSAGE),
    "head dim": (lambda: _explicit(language={"headDim": 15}), HEAD_DIM_MESSAGE),
    "image cell": (lambda: _explicit(projector={"mergeSize": 3}), CELL_MESSAGE),
    "min lr": (lambda: _mut(_stage(), lambda s: s["optimizer"].update(minLr=1.0)),
               "spec.optimizer.minLr: must not exceed optimizer.lr"),
    "preset tp": (lambda: _mut(_stage(), lambda s: s.update(parallelism={**s["parallelism"], "tensor": 16},
                                                            batch={"global": 128, "micro": 1})),
                  TP_MESSAGE),
    "micro batch": (lambda: _mut(_stage(), lambda s: s["batch"].update(micro=2)),
                    "spec.batch.micro: must be 1: packed sequences are one micro-batch each"),
    "explicit heads": (lambda: _mut(_stage(), lambda s: s.update(model={
        "vision": {"numLayers": 2, "hiddenSize": 64, "numAttentionHeads": 4},
        "language": {"numLayers": 2, "hiddenSize": 60, "numAttentionHeads": 6, "ffnHiddenSize": 128, "vocabSize": 100}},
        parallelism={**s["parallelism"], "tensor": 4}, nodes=1, gpusPerNode=8)),
        TP_MESSAGE),
    "preset plus blocks": (lambda: _mut(_stage(), lambda s: s["model"].update(
        language={"numLayers": 2, "hiddenSize": 64, "numAttentionHeads": 4, "ffnHiddenSize": 128, "vocabSize": 100})),
        "preset cannot be combined with explicit vision/language blocks"),
    "threshold and target": (lambda: _mut(_kind("BalancedCorpus"), lambda s: s["balancing"].update(threshold=20000.0)),
                             "at most one of threshold, targetSamples may be set"),
    "pds two sources": (lambda: _mut(_kind("PackedDataset"), lambda s: s["source"].update(uri="s3://x/y")),
                        "exactly one of balancedCorpus, uri must be set"),
    "pixels": (lambda: _mut(_kind("PackedDataset"), lambda s: s["image"].update(minPixels=10_000_000)),
               "minPixels must not exceed maxPixels"),
    "eval model none": (lambda: _mut(_kind("EvalSuite"), lambda s: s.update(model={})),
                        "exactly one of trainingStage, rlStage, checkpoint, huggingFace must be set"),
    "eval model two": (lambda: _mut(_kind("EvalSuite"), lambda s: s.update(model={"trainingStage": "a", "rlStage": "b"})),
                       "exactly one of trainingStage, rlStage, checkpoint, huggingFace must be set"),
    "rl policy two": (lambda: _mut(_kind("VLMRLStage"), lambda s: s["initFrom"].update(checkpoint="s3://x/hf")),
                      "exactly one of trainingStage, rlStage, checkpoint, huggingFace must be set"),
    "rl vllm without gpus": (lambda: _mut(_kind("VLMRLStage"), lambda s: s.update(rollout="vllm", gpus=0)),
                             "spec.rollout: vllm generates on GPUs, so gpus must be at least 1"),
    "rl batch vs gpus": (lambda: _mut(_kind("VLMRLStage"), lambda s: s["rl"]["phases"][0].update(
        groupSize=3, promptsPerStep=5)),
        "spec.rl.phases: promptsPerStep x groupSize must be a multiple of gpus in every phase (each GPU's process "
        "takes an equal share of a step's completions)"),
    "rl phase names": (lambda: _mut(_kind("VLMRLStage"), lambda s: s["rl"]["phases"][1].update(name="answer-only")),
                       "spec.rl.phases: phase names must be unique (they name the phases' checkpoints)"),
    "rl phase rewards": (lambda: _mut(_kind("VLMRLStage"), lambda s: s["rl"]["phases"][0].update(
        rewards=["format", "exact_match", "format"])), "spec.rl.phases: a phase lists each reward once"),
    "rl reward range": (lambda: _mut(_kind("VLMRLStage"), lambda s: s["selection"].update(rewardRange=[0.9, 0.1])),
                        "spec.selection.rewardRange: [lo, hi] with lo <= hi"),
    "rl selection rewards": (lambda: _mut(_kind("VLMRLStage"), lambda s: s["selection"].update(
        rewards=["numeric", "numeric"])), "spec.selection.rewards: each reward once"),
    "eval workers vs gpus": (lambda: _mut(_kind("EvalSuite"), lambda s: s.update(gpus=4, parallelism={"workers": 2})),
                             "parallelism.workers: with backend hf each worker takes one GPU, so gpus must be 0, "
                             "equal workers, or workers 1 (one process over all GPUs)"),
    "vllm without gpus": (lambda: _mut(_kind("EvalSuite"), lambda s: s.update(
        backend="vllm", gpus=0, lmmsEval={k: v for k, v in s["lmmsEval"].items() if k != "model"})),
        "backend vllm runs on GPUs: gpus must be a positive multiple of parallelism.workers (each replica "
        "takes gpus / workers GPUs by tensor parallelism)"),
    "vllm gpus per replica": (lambda: _mut(_kind("EvalSuite"), lambda s: s.update(
        backend="vllm", gpus=3, parallelism={"workers": 2}, lmmsEval={k: v for k, v in s["lmmsEval"].items() if k != "model"})),
        "backend vllm runs on GPUs: gpus must be a positive multiple of parallelism.workers (each replica "
        "takes gpus / workers GPUs by tensor parallelism)"),
    "vllm with an hf model": (lambda: _mut(_kind("EvalSuite"), lambda s: s.update(backend="vllm", gpus=1)),
                              "lmmsEval.model: backend vllm evaluates with lmms-eval's vllm model, so leave lmmsEval.model out"),
    "vllm reserved args": (lambda: _mut(_kind("EvalSuite"), lambda s: s.update(
        backend="vllm", gpus=2, lmmsEval={**{k: v for k, v in s["lmmsEval"].items() if k != "model"},
                                          "modelArgs": {"tensor_parallel_size": "2"}})),
        "lmmsEval.modelArgs: with backend vllm, model, tensor_parallel_size and data_parallel_size come from "
        "spec.model, spec.gpus and spec.parallelism.workers"),
    "trainjob priority": (lambda: _mut(_stage(), lambda s: s.update(runtime="TrainJob")),
                          "scheduling: with runtime TrainJob the pod priority and scheduler come from the "
                          "ClusterTrainingRuntime (chart values training.trainJob.*), or use runtime PyTorchJob to set "
                          "them per stage"),
    "trainjob host network": (lambda: _mut(_stage(), lambda s: s.update(
        runtime="TrainJob", scheduling={"queueName": "q"}, pod={"hostNetwork": True})),
        "pod.hostNetwork: with runtime TrainJob the ClusterTrainingRuntime decides (chart value "
        "training.trainJob.hostNetwork)"),
    "reserved pod label": (lambda: _mut(_kind("PackedDataset"), lambda s: s.update(
        pod={"labels": {"team": "a", "vlmops.dev/step": "x"}})),
        "pod.labels: keys under vlmops.dev/, app.kubernetes.io/, kueue.x-k8s.io/ and the job controllers' "
        "prefixes are set by the operator"),
    "shm mount": (lambda: _mut(_kind("PackedDataset"), lambda s: s.update(
        pod={"volumeMounts": [{"name": "x", "mountPath": "/dev/shm"}]})),
        "pod.volumeMounts: /dev/shm is sized by pod.shmSize"),
    "model args object": (lambda: _mut(_kind("EvalSuite"), lambda s: s["lmmsEval"].update(
        modelArgs={"max_pixels": 3240000, "nested": {"a": 1}})),
        "lmmsEval.modelArgs: values are strings, numbers or booleans"),
    "eval pretrained arg": (lambda: _mut(_kind("EvalSuite"), lambda s: s["lmmsEval"].update(modelArgs={"pretrained": "x"})),
                            "lmmsEval.modelArgs.pretrained: the checkpoint comes from spec.model"),
}


def test_trainjob_stages_and_scalar_model_args_are_admitted():
    kind, spec = _mut(_stage(), lambda s: s.update(runtime="TrainJob", scheduling={"queueName": "q"},
                                                   pod={"shmSize": "64Gi", "volumes": [{"name": "m", "emptyDir": {}}]}))
    assert cel_failures(kind, spec) == [] == pydantic_failures(kind, spec)
    kind, spec = _mut(_kind("EvalSuite"), lambda s: s["lmmsEval"].update(
        modelArgs={"max_pixels": 3240000, "use_flash": True, "temperature": 0.5, "attn": "sdpa"}))
    assert cel_failures(kind, spec) == [] == pydantic_failures(kind, spec)


def test_data_parallel_and_vllm_evalsuites_are_admitted():
    for update in ({"gpus": 2, "parallelism": {"workers": 2}}, {"gpus": 0, "parallelism": {"workers": 4}},
                   {"gpus": 8, "parallelism": {"workers": 1}}):
        kind, spec = _mut(_kind("EvalSuite"), lambda s: s.update(update))
        assert cel_failures(kind, spec) == [] == pydantic_failures(kind, spec)
    kind, spec = _mut(_kind("EvalSuite"), lambda s: s.update(
        backend="vllm", gpus=4, parallelism={"workers": 2},
        lmmsEval={k: v for k, v in s["lmmsEval"].items() if k != "model"}))
    assert cel_failures(kind, spec) == [] == pydantic_failures(kind, spec)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_fails_the_same_way_in_cel_and_pydantic(case):
    make, message = CASES[case]
    kind, spec = make()
    assert message in cel_failures(kind, spec)
    assert message in pydantic_failures(kind, spec)


def test_api_preset_names_match_the_trainer():
    import typing

    from vlmops.api.training_stage import PRESET_NAMES, ModelSpec
    from vlmops_contract.model_shapes import PRESETS

    assert set(PRESET_NAMES) == set(PRESETS)
    literal = typing.get_args(typing.get_args(ModelSpec.model_fields["preset"].annotation)[0])
    assert set(literal) == set(PRESETS)


def test_global_batch_112_on_128_gpus_tp1_is_rejected_naming_the_field(tmp_path):
    import subprocess
    import sys

    stage = copy.deepcopy(next(o for o in _examples() if o.get("metadata", {}).get("name") == "stage-1-5-mid-training"))
    stage["spec"].update(nodes=16, gpusPerNode=8, parallelism={"tensor": 1}, batch={"global": 112})
    f = tmp_path / "stage.yaml"
    f.write_text(yaml.safe_dump(stage))
    p = subprocess.run([sys.executable, "-m", "vlmops", "validate", "-f", str(f)], capture_output=True, text=True,
                       cwd=REPO)
    assert p.returncode != 0
    assert "spec.batch.global: must be a positive multiple of the data-parallel size" in p.stdout + p.stderr
    kind, spec = _mut(_stage(), lambda s: s.update(nodes=16, gpusPerNode=8, parallelism={**s["parallelism"], "tensor": 1},
                                                   batch={"global": 112, "micro": 1}))
    assert any(m.startswith("spec.batch.global") for m in cel_failures(kind, spec))  # the API server too


def test_admission_accepts_exactly_what_the_trainer_accepts():
    """Random stages over the axes the trainer checks: CEL (API server), pydantic (vlmops validate,
    operator) and the trainer's own start checks agree on every one."""
    import random

    from vlmops_jobs.common.result import JobError
    from vlmops_jobs.train import JOB
    from vlmops_jobs.train.trainer import validate

    rng = random.Random(7)
    base = _stage()
    disagreements = []
    for i in range(300):
        spec = copy.deepcopy(base["spec"])
        tp, pp, cp = rng.choice([1, 2, 3, 4, 8, 16]), rng.choice([1, 1, 1, 2]), rng.choice([1, 1, 1, 2])
        spec.update(nodes=rng.choice([1, 2, 3, 16]), gpusPerNode=rng.choice([1, 2, 6, 8]))
        spec["parallelism"].update(tensor=tp, pipeline=pp, context=cp, sequenceParallel=rng.random() < 0.1)
        spec["batch"] = {"global": rng.choice([1, 8, 16, 48, 64, 112, 256]), "micro": rng.choice([1, 1, 1, 2])}
        spec["optimizer"].update(minLr=rng.choice([0.0, 1e-6, 1e-3]), warmupFraction=rng.choice([0.0, 0.5, 0.99]))
        if rng.random() < 0.1:
            spec["initFrom"] = {"huggingFace": "org/model"}
        explicit = rng.random() < 0.4
        if explicit:
            heads = rng.choice([4, 6, 8, 12, 16])
            spec["model"] = {"vision": {"numLayers": 2, "hiddenSize": rng.choice([64, 96, 1024]),
                                        "numAttentionHeads": rng.choice([2, 4, 12, 16]),
                                        "patchSize": rng.choice([14, 14, 28, 16])},
                             "projector": {"mergeSize": rng.choice([1, 2, 2, 3])},
                             "language": {"numLayers": 2, "hiddenSize": heads * 64 + rng.choice([0, 0, 8]),
                                          "numAttentionHeads": heads,
                                          "numQueryGroups": rng.choice([1, 2, 3, heads]),
                                          "ffnHiddenSize": rng.choice([1024, 1000, 3072]), "vocabSize": 1000}}
            if rng.random() < 0.3:
                spec["model"]["vision"]["ffnHiddenSize"] = rng.choice([4096, 1000, 3072])
            if rng.random() < 0.3:
                spec["model"]["language"]["headDim"] = rng.choice([128, 64, 15])
        else:
            spec["model"] = {"preset": rng.choice(["tiny", "llava-ov-1.5-4b", "llava-ov-1.5-8b"])}
        cel_ok = not cel_failures("VLMTrainingStage", spec)
        pyd_ok = not pydantic_failures("VLMTrainingStage", spec)
        argv = ["--data", "x", "--tokenizer", "y", "--train-iters", "1", "--tensor", str(tp), "--pipeline", str(pp),
                "--context", str(cp), "--global-batch", str(spec["batch"]["global"]),
                "--micro-batch", str(spec["batch"]["micro"]), "--min-lr", str(spec["optimizer"]["minLr"]),
                "--lr", str(spec["optimizer"]["lr"]), "--warmup-fraction", str(spec["optimizer"]["warmupFraction"])]
        argv += ["--sequence-parallel"] if spec["parallelism"]["sequenceParallel"] else []
        argv += ["--init-from", "hf://org/model"] if "initFrom" in spec and "huggingFace" in spec["initFrom"] else []
        if explicit:

            from vlmops.api.training_stage import ModelSpec

            m = ModelSpec.model_validate(spec["model"])
            argv += ["--model-json", m.model_json()]
        else:
            argv += ["--preset", spec["model"]["preset"]]
        try:
            validate(JOB.parser("trainer").parse_args(argv), spec["nodes"] * spec["gpusPerNode"])
            job_ok = True
        except JobError:
            job_ok = False
        if not (cel_ok == pyd_ok == job_ok):
            disagreements.append((i, cel_ok, pyd_ok, job_ok, spec["parallelism"], spec["model"]))
    assert not disagreements, disagreements[:3]


@pytest.mark.parametrize("name,ok", [
    ("stage-1", True), ("a" * 100, True), ("x", True),
    ("a.b", False),  # would own the same Jobs as "a-b"
    ("1abc", False), ("abc-", False), ("Abc", False), ("a_b", False),
])
def test_cr_name_rule_means_the_same_in_cel_and_in_validate(name, ok):
    """The root CEL rule on metadata.name (evaluated as the API server would) and `vlmops validate`
    agree; names the rule admits map to distinct child names and valid label values."""
    from vlmops.manifests import Doc, validate

    root = crd(KINDS["PackedDataset"].api)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = {**_kind("PackedDataset"), "metadata": {"name": name, "namespace": "ns"}}
    cel_ok = all(bool(_ENV.program(_ENV.compile(r["rule"])).evaluate({"self": celpy.json_to_cel(obj)}))
                 for r in root["x-kubernetes-validations"])
    errors = [e for e in validate(Doc(obj, "test")) if e.startswith("metadata.name")]
    assert cel_ok is ok and (errors == []) is ok, errors
    if not ok:
        assert len(errors) == 1 and "lowercase letters, digits and '-'" in errors[0]
