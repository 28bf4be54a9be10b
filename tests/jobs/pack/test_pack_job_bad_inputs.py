"""Bad input stops a step with one error naming the input and field (exit 2, nothing final
written); samples longer than the sequence length are dropped or truncated, and counted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from vlmops_contract.layouts import pack as layout

from vlmops_jobs.common import storage, synthetic
from vlmops_jobs.common.result import JobError


def test_bad_samples_exit_2_naming_the_sample_and_long_ones_are_dropped_or_truncated(tmp_path, tok, run_pack,
                                                                                     run_step):
    src = tmp_path / "src"
    info = synthetic.make_samples(str(src), 12, seed=2)
    out = str(tmp_path / "out")
    lengths = ("lengths", "--source", str(src), "--tokenizer", tok, "--shard", "0", "--output", out)

    def rewrite(rows):
        pq.write_table(pa.Table.from_pylist(rows), str(src / "samples.parquet"))

    # tokenizer missing
    with pytest.raises(JobError, match="tokenizer"):
        run_step("lengths", "--source", str(src), "--tokenizer", str(tmp_path / "nope"), "--shard", "0", "--output", out)
    # duplicate ids
    t = pq.read_table(info["samples"]).to_pylist()
    t[3]["id"] = t[2]["id"]
    rewrite(t)
    with pytest.raises(JobError, match=f"sample {t[2]['id']} id: duplicate"):
        run_step(*lengths)
    # unreadable image
    t[3]["id"] = "x3"
    k = next(i for i, r in enumerate(t) if r["images"])
    (src / t[k]["images"][0]).write_bytes(b"not a png")
    rewrite(t)
    with pytest.raises(JobError, match=f"sample {t[k]['id']} images: unreadable"):
        run_step(*lengths)
    # sample without text
    t = pq.read_table(info["samples"]).to_pylist()
    t[3]["id"] = "x3"
    t[5]["conversations"] = json.dumps([{"role": "user", "content": ""}])
    t[5]["images"] = []
    t[k]["images"] = []
    t[k]["conversations"] = json.dumps([{"role": "user", "content": "hi"}])
    rewrite(t)
    with pytest.raises(JobError, match=f"sample {t[5]['id']} conversations: no text"):
        run_step(*lengths)
    # capacity smaller than every sample: exit code 2 through the CLI, nothing final written
    t[5]["conversations"] = json.dumps([{"role": "user", "content": "hello"}])
    rewrite(t)
    run_pack(*lengths)
    p = subprocess.run([sys.executable, "-m", "vlmops_jobs.pack", "plan", "--sequence-length", "5", "--output", out],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "jobs"})
    assert p.returncode == 2 and p.stderr.startswith("error: spec sequenceLength")
    assert not storage.exists(storage.join(out, layout.PLAN_MANIFEST))
    # a capacity between: long samples are dropped and counted, or truncated
    L = pq.read_table(storage.join(out, layout.lengths_part(0))).column("tokens").to_numpy()
    cap = int(np.sort(L)[-3])
    r = run_pack("plan", "--sequence-length", str(cap), "--output", out)
    assert r["stats"]["droppedTooLong"] == int((L > cap).sum()) > 0
    r = run_pack("plan", "--sequence-length", str(cap), "--truncate", "--output", out)
    assert r["stats"]["droppedTooLong"] == 0 and r["stats"]["truncated"] == int((L > cap).sum())


def test_a_plan_expecting_other_shards_than_the_lengths_step_committed_is_bad_input(tmp_path, tok, run_pack,
                                                                                    run_step):
    src = tmp_path / "src"
    synthetic.make_samples(str(src), 8, seed=3)
    out = str(tmp_path / "out")
    for shard in (0, 1):
        run_pack("lengths", "--source", str(src), "--tokenizer", tok, "--shard", str(shard), "--shards", "2",
                 "--output", out)
    with pytest.raises(JobError, match=r"lengths: committed by a run with 2 shards, this plan expects 3"):
        run_step("plan", "--sequence-length", "4096", "--shards", "3", "--output", out)
    assert run_pack("plan", "--sequence-length", "4096", "--shards", "2", "--output", out)["stats"]["samples"] == 8


def test_zero_token_samples_are_dropped_and_counted_and_negative_counts_are_bad_input(tmp_path, tok, run_pack,
                                                                                      run_step):
    src = tmp_path / "src"
    synthetic.make_samples(str(src), 6, seed=5)
    out = str(tmp_path / "out")
    run_pack("lengths", "--source", str(src), "--tokenizer", tok, "--shard", "0", "--output", out)
    part = storage.join(out, layout.lengths_part(0))
    table = pq.read_table(part)
    tokens = table.column("tokens").to_numpy().copy()
    tokens[[1, 4]] = 0
    pq.write_table(table.set_column(table.schema.get_field_index("tokens"), "tokens", pa.array(tokens, pa.int32())), part)
    r = run_pack("plan", "--sequence-length", "4096", "--output", out)
    st = r["stats"]
    assert st["samples"] == 6 and st["droppedEmpty"] == 2 and st["droppedTooLong"] == 0
    plan = pq.read_table(storage.join(out, layout.PLAN))
    assert plan.num_rows == 4 and sorted(plan.column("row").to_pylist()) == [0, 2, 3, 5]
    assert st["lowerBoundSequences"] <= st["sequences"] and st["gapToLowerBound"] >= 0
    tokens[4] = -3
    pq.write_table(table.set_column(table.schema.get_field_index("tokens"), "tokens", pa.array(tokens, pa.int32())), part)
    with pytest.raises(JobError, match=f"sample {table.column('id')[4].as_py()} tokens: -3 is negative"):
        run_step("plan", "--sequence-length", "4096", "--output", out)
