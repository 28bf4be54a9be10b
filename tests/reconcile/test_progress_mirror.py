"""Training progress mirrored from progress.json (read through fsspec, here from moto S3)."""
from __future__ import annotations

from vlmops import progress
from vlmops_jobs.common import storage


def test_progress_read_from_s3_and_patch(s3_bucket):
    out = f"{s3_bucket}/stage/output"
    assert progress.read(out) is None  # not written yet: nothing, no error
    storage.write_json_atomic(f"{out}/progress.json", {
        "step": 40, "totalSteps": 100, "loss": 2.5, "tokensPerSecond": 1000.0, "mfu": 0.41,
        "checkpoint": {"latest": f"{s3_bucket}/ck/iter_0000040", "step": 40}, "updatedAt": 1.0})
    doc = progress.read(out)
    patch = progress.status_patch(doc, {"phase": "Running"})
    assert patch["progress"]["step"] == 40 and patch["progress"]["mfu"] == 0.41
    assert patch["checkpoint"] == {"latest": f"{s3_bucket}/ck/iter_0000040", "step": 40}
    status = {"phase": "Running", **patch}
    assert progress.status_patch(doc, status) is None  # unchanged: no write
    older = {**doc, "step": 30}
    assert progress.status_patch(older, status) is None  # never moves backwards


def test_an_rl_stages_reward_kl_and_length_are_mirrored_while_it_runs(s3_bucket):
    out = f"{s3_bucket}/rl/output"
    storage.write_json_atomic(f"{out}/progress.json", {
        "step": 7, "totalSteps": 20, "phase": "answer-only", "rewardMean": 0.6, "rewardStd": 0.4, "kl": 0.01,
        "completionLength": 12.5, "tokensPerSecond": 900.0, "loss": 0.02, "curve": [{"step": 7, "reward": 0.6}],
        "checkpoint": {"latest": f"{s3_bucket}/ck/answer-only/checkpoint-6", "step": 6}})
    patch = progress.status_patch(progress.read(out), {"phase": "Running"})
    assert patch["progress"] == {"step": 7, "totalSteps": 20, "phase": "answer-only", "rewardMean": 0.6,
                                 "rewardStd": 0.4, "kl": 0.01, "completionLength": 12.5, "tokensPerSecond": 900.0,
                                 "loss": 0.02}
