"""lmms-eval's results -> status-shaped results, thresholds on them, and the result line's 4 KiB fit."""
from __future__ import annotations

import json

import pytest

from vlmops_contract import thresholds
from vlmops_jobs.evaluate import normalize, results

RAW = {
    "results": {
        "mmbench_en": {"alias": "mmbench_en", " ": " "},
        "mmmu_val": {"alias": "mmmu_val", "mmmu_acc,none": 0.4123, "mmmu_acc_stderr,none": "N/A"},
        "gsm8k": {
            "alias": "gsm8k",
            "exact_match,strict-match": 0.5,
            "exact_match_stderr,strict-match": 0.1,
            "exact_match,flexible-extract": 0.6,
            "exact_match_stderr_clt,flexible-extract": 0.2,
            "submission,none": None,
            "bad,none": float("nan"),
        },
    },
    "n-samples": {"mmmu_val": {"original": 900, "effective": 10}, "gsm8k": {"original": 5, "effective": 5}},
    "versions": {"mmmu_val": 0.0, "gsm8k": "Yaml"},
}


def test_normalised_results_are_status_shaped_with_stderr_and_skips_on_the_side():
    n = normalize.normalize(RAW)
    assert n["results"] == [
        {"task": "gsm8k", "metric": "exact_match,flexible-extract", "value": 0.6},
        {"task": "gsm8k", "metric": "exact_match,strict-match", "value": 0.5},
        {"task": "mmmu_val", "metric": "mmmu_acc", "value": 0.4123},
    ]
    assert all(set(r) == {"task", "metric", "value"} for r in n["results"])
    assert n["tasks"]["gsm8k"]["stderr"] == {"exact_match,strict-match": 0.1}
    assert n["tasks"]["mmmu_val"] == {"samples": 10, "originalSamples": 900, "version": 0.0}
    assert n["skipped"] == ["gsm8k/bad: non-finite value", "gsm8k/submission: NoneType value"]
    json.dumps(n, allow_nan=False)  # status-safe


def test_thresholds_pass_only_present_finite_values_at_or_above_the_minimum():
    rows = [
        {"task": "t", "metric": "exact_match", "value": 0.75},
        {"task": "t", "metric": "relaxed_accuracy", "value": 0.25},
        {"task": "u", "metric": "m", "value": float("nan")},
    ]
    passed, total, failing = thresholds.evaluate_thresholds(
        rows, {"t/exact_match": 0.75, "t/relaxed_accuracy": 0.5, "t/missing": 0.1, "u/m": 0.0}
    )
    assert (passed, total) == (1, 4)
    assert failing == ["t/missing: missing from results", "t/relaxed_accuracy: 0.25 < 0.5", "u/m: not a finite number (nan)"]
    assert thresholds.evaluate_thresholds(rows, {}) == (0, 0, [])
    assert thresholds.evaluate_thresholds(rows, {"t/exact_match": 0.5}) == (1, 1, [])
    with pytest.raises(ValueError):
        thresholds.evaluate_thresholds(rows, {"no-slash": 1.0})


def test_result_line_is_cut_to_fit_the_termination_message():
    many = [{"task": f"task_{i:03d}", "metric": "exact_match,flexible-extract", "value": i / 7} for i in range(200)]
    result = {"results": many, "lmmsEvalVersion": "0.7.3", "partial": True,
              "errors": [{"task": "x", "error": "E" * 300}] * 3,
              "output": {"uri": "s3://b/o", "manifest": "s3://b/o/manifest.json", "digest": "sha256:" + "0" * 64}}
    fitted = results.fit_result(result)
    line = json.dumps({"vlmopsResult": fitted}, sort_keys=True, separators=(",", ":"))
    assert len(line.encode()) <= 4096
    assert fitted["resultsTruncated"]["total"] == 200 and fitted["resultsTruncated"]["shown"] == len(fitted["results"]) > 10
    assert fitted["results"] == many[: len(fitted["results"])]
    small = {"results": many[:3], "partial": False}
    assert results.fit_result(small) is small
