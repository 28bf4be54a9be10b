"""VLMRLStage admission: the CRD's CEL, the API's pydantic checks and the RL job's own start checks
(`vlmops_jobs.rl.phases.parse`) accept exactly the same specs; the EvalSuite and a later RL stage can
name an RL stage's export."""
from __future__ import annotations

import copy
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the CEL engine helpers of test_cel_rules
from test_cel_rules import _kind, cel_failures, pydantic_failures  # noqa: E402

from vlmops_jobs.common.result import JobError  # noqa: E402
from vlmops_jobs.rl.phases import parse  # noqa: E402


def _job_failures(spec: dict) -> list[str]:
    try:
        parse(json.dumps(spec["rl"]["phases"]), spec["gpus"], spec["rollout"])
    except JobError as e:
        return str(e).split("; ")
    return []


def test_admission_accepts_exactly_what_the_rl_job_accepts():
    rng = random.Random(11)
    base = _kind("VLMRLStage")
    disagreements = []
    for _ in range(200):
        spec = copy.deepcopy(base["spec"])
        spec.update(gpus=rng.choice([0, 1, 2, 3, 4, 8]), rollout=rng.choice(["hf", "vllm"]))
        for p in spec["rl"]["phases"]:
            p.update(groupSize=rng.choice([2, 3, 4, 8, 16]), promptsPerStep=rng.choice([1, 2, 3, 64]),
                     rewards=rng.choice([["exact_match"], ["format", "format"], ["numeric", "format"]]))
        if rng.random() < 0.2:
            spec["rl"]["phases"][-1]["name"] = spec["rl"]["phases"][0]["name"]
        job = sorted(m for m in _job_failures(spec) if not m.startswith("spec.selection"))
        cel = sorted(m for m in cel_failures("VLMRLStage", spec) if m.startswith("spec.r"))
        pyd = sorted(m for m in pydantic_failures("VLMRLStage", spec) if m.startswith("spec.r"))
        if not (job == cel == pyd):
            disagreements.append((spec["gpus"], spec["rollout"], job, cel, pyd))
    assert not disagreements, disagreements[:3]


def test_an_rl_stage_may_start_from_another_and_an_eval_may_read_it():
    from vlmops.kinds import KINDS, references

    kind, spec = "VLMRLStage", copy.deepcopy(_kind("VLMRLStage")["spec"])
    spec["initFrom"] = {"rlStage": "rl-previous"}
    assert cel_failures(kind, spec) == [] == pydantic_failures(kind, spec)
    assert references({"kind": kind, "spec": spec}) == [("VLMRLStage", "rl-previous")]
    ev = _kind("EvalSuite")
    ev = {**ev, "spec": {**ev["spec"], "model": {"rlStage": "rl-grpo"}}}
    assert references(ev) == [("VLMRLStage", "rl-grpo")]
    assert KINDS["VLMRLStage"].short == "vrl" and KINDS["VLMRLStage"].done_condition == "Succeeded"
