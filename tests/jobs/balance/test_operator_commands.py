"""The operator's BalancedCorpus builder and this job agree: run exactly the commands it builds."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vlmops_contract.result import parse_result
from vlmops_jobs.balance import JOB
from vlmops_jobs.common import storage

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_pool import make_pool  # noqa: E402

kinds = pytest.importorskip("vlmops.kinds")


def _commands(plan):
    out = []
    for step in plan.steps:
        spec = step.manifest["spec"]
        cmd = spec["template"]["spec"]["containers"][0]["command"]
        indexed = spec.get("completionMode") == "Indexed"
        out.append((step.name, cmd, spec.get("completions", 1) if indexed else None))
    return out


@pytest.mark.parametrize("balancing", [{"method": "MetaCLIP", "targetSamples": 900, "seed": 4},
                                       {"method": "InverseFrequency", "threshold": 30}])
def test_the_commands_the_operator_builds_run_end_to_end(tmp_path, capsys, monkeypatch, balancing):
    pool = make_pool(f"file://{tmp_path}/in", n=2000, c=200, d=16, files=2)
    out = f"file://{tmp_path}/out"
    cr = {"apiVersion": "vlmops.dev/v1alpha1", "kind": "BalancedCorpus",
          "metadata": {"name": "bc", "namespace": "default", "uid": "0000"},
          "spec": {"source": {"uri": pool["source"]}, "concepts": {"uri": pool["concepts"]},
                   "retrieval": {"topK": 3, "minSimilarity": 0.3}, "balancing": balancing,
                   "shards": 3, "output": {"uri": out}}}
    cmds = _commands(kinds.build(cr))
    assert [c[0] for c in cmds] == ["retrieve", "balance"]
    res = None
    for name, cmd, completions in cmds:
        assert cmd[:3] == ["python", "-m", "vlmops_jobs.balance"] and cmd[3] == name
        for i in range(completions or 1):
            if completions:
                assert "--shard" not in cmd  # the Indexed Job's completion index picks the shard
                monkeypatch.setenv("JOB_COMPLETION_INDEX", str(i))
            rc = JOB.run(cmd[3:])
            stdout, err = capsys.readouterr()
            assert rc == 0, (cmd, err)
            res = parse_result(stdout)
    s = res["stats"]
    assert s["inputSamples"] == 2000 and 0 < s["selectedSamples"] < 2000
    assert s["after"]["gini"] < s["before"]["gini"]
    assert res["output"]["manifest"] == storage.join(out, "manifest.json")


def test_the_embed_commands_the_operator_builds_parse():
    cr = {"apiVersion": "vlmops.dev/v1alpha1", "kind": "BalancedCorpus",
          "metadata": {"name": "bc", "namespace": "default", "uid": "0000"},
          "spec": {"source": {"uri": "s3://b/src/", "embedder": {"model": "s3://b/models/clip", "batchSize": 8}},
                   "concepts": {"uri": "s3://b/concepts.parquet"},
                   "retrieval": {"index": "IVF1024,Flat", "nprobe": 16},
                   "shards": 4, "output": {"uri": "s3://b/out"}}}
    cmds = _commands(kinds.build(cr))
    assert [c[0] for c in cmds] == ["embed", "retrieve", "balance"]
    e = JOB.parser("embed").parse_args(cmds[0][1][4:])
    assert (e.embedder, e.batch_size, e.shards, e.image_field) == ("s3://b/models/clip", 8, 4, "images")
    r = JOB.parser("retrieve").parse_args(cmds[1][1][4:])
    assert r.embedded and (r.index, r.nprobe, r.top_k, r.shards) == ("IVF1024,Flat", 16, 5, 4)
    b = JOB.parser("balance").parse_args(cmds[2][1][4:])
    assert (b.method, b.threshold, b.target_samples, b.shards) == ("MetaCLIP", None, None, 4)


def test_a_target_above_the_corpus_fails_the_balance_job_with_the_numbers(tmp_path, capsys, monkeypatch):
    """The operator's balance Job exits 2 with one `error:` line, which the CR's Stalled condition
    carries (a failed child's last line, see reconciler._failed): it is not Ready."""
    pool = make_pool(f"file://{tmp_path}/in", n=600, c=60, d=16, files=1)
    cr = {"apiVersion": "vlmops.dev/v1alpha1", "kind": "BalancedCorpus",
          "metadata": {"name": "bc", "namespace": "default", "uid": "0000"},
          "spec": {"source": {"uri": pool["source"]}, "concepts": {"uri": pool["concepts"]},
                   "retrieval": {"topK": 2, "minSimilarity": 0.3}, "balancing": {"targetSamples": 5000},
                   "shards": 1, "output": {"uri": f"file://{tmp_path}/out"}}}
    (_, retrieve, n), (_, balance, _) = _commands(kinds.build(cr))
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    assert JOB.run(retrieve[3:]) == 0
    capsys.readouterr()
    assert JOB.run(balance[3:]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "balancing targetSamples: 5000 is more than the" in lines[0] and "600 input samples" in lines[0]
    assert not storage.exists(f"file://{tmp_path}/out/manifest.json")
