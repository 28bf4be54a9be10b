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
