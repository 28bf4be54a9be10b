"""GRPO on CPU with the real job: a tiny policy that already says the answer token sometimes,
select -> merge -> train; the mean reward rises over a few steps, the export loads and gives the
answer more often, and a run killed after a checkpoint resumes from it and ends where an
uninterrupted run ends."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixtures import answer_token, colour_prompts, env, first_token_distribution, tiny_policy

pytest.importorskip("trl")

PHASE = {"template": "answerOnly", "rewards": ["exact_match", "format"], "groupSize": 8, "promptsPerStep": 2,
         "klCoef": 0.01, "lr": 1e-5, "maxCompletionLength": 1}
PHASES = [{"name": "answer", "steps": 5, **PHASE}, {"name": "again", "steps": 4, **PHASE}]  # the second from the first's end
STEPS = 9


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The policy, prompts whose answer is a token it gives with probability ~0.1-0.5, and the
    committed selection (select + merge)."""
    from vlmops_jobs.rl import JOB

    root = tmp_path_factory.mktemp("rl")
    policy = tiny_policy(root / "policy", seed=0, head_scale=30.0)
    same = {"colours": ("red",), "sizes": (56,)}  # one prompt, eight times: every prompt has the same odds
    word, p0 = answer_token(policy, colour_prompts(root / "prompts", 8, **same), 0.15, 0.45)
    prompts = colour_prompts(root / "prompts", 8, answer=word, **same)
    out = f"file://{root}/out"
    assert JOB.run(["select", "--policy", str(policy), "--prompts", str(prompts), "--samples", "8",
                    "--max-completion-length", "1", "--rewards", "exact_match", "--shards", "1", "--shard", "0",
                    "--seed", "3", "--output", out]) == 0
    assert JOB.run(["merge", "--shards", "1", "--output", out]) == 0
    return {"root": root, "policy": policy, "prompts": prompts, "word": word, "p0": p0, "out": out}


def _train_args(task, out: str, ckpt: str, interval: int = 100) -> list[str]:
    return ["train", "--policy", str(task["policy"]), "--phases", json.dumps(PHASES), "--seed", "7",
            "--checkpoint-uri", ckpt, "--checkpoint-interval", str(interval), "--output", out]


def _copy_selection(task, dest):
    import shutil

    src = task["root"] / "out"
    dest.mkdir(parents=True)
    shutil.copytree(src / "selection", dest / "selection")
    shutil.copy(src / "selection-manifest.json", dest)
    return f"file://{dest}"


def _curve(out: str) -> list[dict]:
    return json.loads((__import__("pathlib").Path(out.removeprefix("file://")) / "progress.json").read_text())["curve"]


@pytest.fixture(scope="module")
def uninterrupted(task):
    from vlmops_jobs.rl import JOB

    out = _copy_selection(task, task["root"] / "run-a")
    assert JOB.run(_train_args(task, out, f"file://{task['root']}/ckpt-a")) == 0
    return out


def test_the_selection_keeps_prompts_the_policy_sometimes_answers_and_names_the_policy(task):
    root = task["root"] / "out"
    man = json.loads((root / "selection-manifest.json").read_text())
    assert man["inputs"]["policy"]["uri"] == str(task["policy"]) and man["inputs"]["policy"]["digest"].startswith("sha256:")
    rows = [json.loads(x) for x in (root / "selection" / "prompts.jsonl").read_text().splitlines()]
    kept = [r for r in rows if r["verdict"] == "kept"]
    assert kept and all(0 < r["correct"] < r["samples"] for r in kept)
    assert all(r["verdict"] == "neverCorrect" for r in rows if r["correct"] == 0)
    assert man["stats"]["selected"] == len(kept) == len((root / "selection" / "selected.jsonl").read_text().splitlines())


def test_the_mean_reward_rises_over_a_few_grpo_steps_and_the_export_answers_more_often(task, uninterrupted):
    curve = _curve(uninterrupted)
    assert [p["step"] for p in curve] == list(range(1, STEPS + 1))
    first, last = [p["reward"] for p in curve[:3]], [p["reward"] for p in curve[-3:]]
    print(f"reward first 3 steps {first}, last 3 steps {last}; initial probability {task['p0']:.3f}")
    assert sum(last) / 3 > sum(first) / 3 + 0.2
    # the exported policy (the release format, loaded as lmms-eval loads it) says the answer more often
    hf = task["root"] / "run-a" / "hf"
    before, tok = first_token_distribution(task["policy"], task["prompts"])
    after, _ = first_token_distribution(hf, task["prompts"])
    ids = [i for i in range(len(tok)) if tok.decode([i]).strip() == task["word"]]
    assert float(after[ids].sum()) > float(before[ids].sum()) + 0.2
    man = json.loads((task["root"] / "run-a" / "manifest.json").read_text())
    assert man["inputs"]["policy"]["uri"] == str(task["policy"])
    assert set(man["inputs"]) == {"policy", "prompts", "selection"}
    assert all(k.startswith("hf/") for k in man["files"]) and "hf/config.json" in man["files"]


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(task, uninterrupted):
    out = _copy_selection(task, task["root"] / "run-b")
    ckpt = f"file://{task['root']}/ckpt-b"
    cmd = [sys.executable, "-m", "vlmops_jobs.rl", *_train_args(task, out, ckpt, interval=2)]
    # killed in the second phase's third step: the first phase is final, the second has checkpoint-2
    killed = subprocess.run(cmd, env={**env(), "VLMOPS_RL_FAULT": "after-step-8"}, capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr[-3000:]
    assert (task["root"] / "ckpt-b" / "answer" / "final" / "phase.json").exists()
    latest = json.loads((task["root"] / "ckpt-b" / "again" / "latest.json").read_text())
    assert latest == {"checkpoint": "checkpoint-2", "step": 2}
    assert not (task["root"] / "run-b" / "manifest.json").exists()
    resumed = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    events = [json.loads(x) for x in resumed.stdout.splitlines() if x.startswith('{"')]
    assert {"event": "resumed", "phase": "again", "step": 7, "checkpoint": "checkpoint-2"} in events
    steps = [e["step"] for e in events if e.get("event") == "step"]
    assert steps == [8, 9]  # nothing before the checkpoint is redone, the finished phase is skipped
    result = json.loads(resumed.stdout.strip().splitlines()[-1])["vlmopsResult"]
    assert result["progress"]["step"] == STEPS
    # the trainer's own resume (weights, optimizer, scheduler, RNG, data position): the same curve
    a = {p["step"]: p["reward"] for p in _curve(uninterrupted)}
    b = {p["step"]: p["reward"] for p in _curve(out)}
    assert b == a


def test_the_backbone_trl_scores_with_gives_the_models_own_logits(task):
    """TRL's fused LM head applies lm_head to `base_model`'s last hidden state: through the view it
    must equal the model's own forward (image splice included)."""
    import torch

    from vlmops_jobs.rl import prompts as pr
    from vlmops_jobs.rl.policy import for_grpo, load

    model, proc = load(str(task["policy"]))
    p = pr.read(str(task["prompts"]))[0]
    text = proc.apply_chat_template(pr.messages(p, "answerOnly"), tokenize=False, add_generation_prompt=True)
    inp = proc(text=[text], images=pr.load_images(str(task["prompts"].parent), p.images), return_tensors="pt")
    with torch.no_grad():
        want = model(**inp).logits
        hidden = for_grpo(model).base_model(**inp).last_hidden_state
        assert torch.allclose(model.lm_head(hidden), want, atol=1e-5)
        # generation still works through the view (images on the prefill step only)
        out = model.generate(**inp, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inp["input_ids"].shape[1] + 3
    assert type(model).__name__ == "LLaVAOneVision1_5_ForConditionalGeneration" and model.is_remote_code()
