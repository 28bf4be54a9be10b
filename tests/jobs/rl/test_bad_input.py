"""Bad input stops a step before it samples or trains: exit 2 and one `error:` line naming the
field (the rules the API checks at admission give the same messages)."""
from __future__ import annotations

import json

import pytest

from vlmops_jobs.rl import JOB


def _run(capsys, *argv) -> tuple[int, str]:
    rc = JOB.run(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def _table(tmp_path, rows) -> str:
    p = tmp_path / "prompts.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


@pytest.mark.parametrize("rows, message", [
    ([{"id": "a", "prompt": "q", "answer": "x"}, {"id": "a", "prompt": "q", "answer": "y"}],
     "prompts row a: id appears more than once"),
    ([{"id": "a", "prompt": "q", "answer": "many", "answerType": "numeric"}],
     "prompts row a: answer 'many' is not a number (answerType numeric)"),
    ([{"id": "a", "prompt": "<image><image> q", "image": "x.png", "answer": "1"}],
     "prompts row a: prompt has 2 <image> markers for 1 images"),
    ([{"id": "a", "prompt": "q", "answer": "1", "answerType": "essay"}],
     "prompts row a: answerType 'essay' is not one of exact, numeric, multiple_choice"),
    ([{"id": "a", "prompt": "", "answer": "1"}], "prompts row a: prompt must be a non-empty string"),
])
def test_a_bad_prompt_row_is_named_before_anything_is_loaded(tmp_path, capsys, rows, message):
    rc, err = _run(capsys, "select", "--policy", str(tmp_path / "no-policy"), "--prompts", _table(tmp_path, rows),
                   "--shards", "1", "--shard", "0", "--output", str(tmp_path / "out"))
    assert rc == 2 and err.startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()


def test_select_refuses_unknown_rewards_and_a_shard_outside_the_count(tmp_path, capsys):
    table = _table(tmp_path, [{"prompt": "q", "answer": "1"}])
    base = ["select", "--policy", "p", "--prompts", table, "--output", str(tmp_path / "o")]
    assert _run(capsys, *base, "--rewards", "exact_match,bleu", "--shard", "0")[1] == \
        "error: selection rewards: bleu not in exact_match, numeric, multiple_choice, format"
    assert _run(capsys, *base, "--shards", "2", "--shard", "2")[1] == "error: select shard: 2 is not in [0, 2)"


def test_merge_needs_every_shard_and_a_valid_range(tmp_path, capsys):
    out = str(tmp_path / "out")
    rc, err = _run(capsys, "merge", "--shards", "2", "--output", out)
    assert rc == 2 and err.startswith("error: output select: shard 0 of 2 is not committed")
    assert _run(capsys, "merge", "--reward-range", "0.9,0.1", "--output", out)[1] == \
        "error: spec.selection.rewardRange: [lo, hi] with lo <= hi"


def _phases(**kw):
    return json.dumps([{"name": "a", "rewards": ["exact_match"], "steps": 2, **kw}])


@pytest.mark.parametrize("phases, extra, message", [
    (_phases(groupSize=3, promptsPerStep=1), ["--gpus", "2"],
     "spec.rl.phases: promptsPerStep x groupSize must be a multiple of gpus in every phase (each GPU's process "
     "takes an equal share of a step's completions)"),
    (_phases(), ["--rollout", "vllm"], "spec.rollout: vllm generates on GPUs, so gpus must be at least 1"),
    (json.dumps([{"name": "a", "rewards": ["exact_match"], "steps": 1}] * 2), [],
     "spec.rl.phases: phase names must be unique (they name the phases' checkpoints)"),
    (_phases(rewards=["format", "format"]), [], "spec.rl.phases: a phase lists each reward once"),
    (_phases(template="essay"), [], "spec.rl.phases[0].template: 'essay' is not one of answerOnly, chainOfThought"),
    (_phases(lr=0), [], "spec.rl.phases[0].lr: 0.0 must be > 0"),
    (_phases(bogus=1), [], "spec.rl.phases[0]: unknown field(s) bogus"),
])
def test_train_refuses_what_admission_refuses(tmp_path, capsys, phases, extra, message):
    rc, err = _run(capsys, "train", "--policy", "p", "--phases", phases, "--checkpoint-uri", str(tmp_path / "c"),
                   "--output", str(tmp_path / "o"), *extra)
    assert (rc, err) == (2, f"error: {message}")


def test_train_needs_a_committed_selection(tmp_path, capsys):
    rc, err = _run(capsys, "train", "--policy", "p", "--phases", _phases(), "--checkpoint-uri", str(tmp_path / "c"),
                   "--output", str(tmp_path / "o"))
    assert rc == 2 and "selection-manifest.json is not committed (run select and merge first)" in err


def test_merge_runs_on_the_data_image_without_torch():
    """`merge` is built on the data image (no torch/transformers/TRL): it must not import them."""
    import subprocess
    import sys

    code = ("import sys; import vlmops_jobs.rl.merge, vlmops_jobs.rl.select, vlmops_jobs.rl.train; "
            "bad = sorted({'torch', 'transformers', 'trl'} & set(sys.modules)); assert not bad, bad")
    from fixtures import env

    r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
