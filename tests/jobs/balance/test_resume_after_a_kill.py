"""A retrieve shard killed midway (like a pod eviction) blocks balance until rerun; the rerun gives
the same bytes, and a tampered shard file is recomputed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_pool import balance_args, make_pool, retrieve_args, run_all, run_job  # noqa: E402

from vlmops_contract.result import parse_result  # noqa: E402
from vlmops_jobs.common import storage  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def _cli(args, env=None):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "jobs"), str(ROOT / "operator")]),
             OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "vlmops_jobs.balance", *args], capture_output=True, text=True,
                          env=e, cwd=ROOT, timeout=120)


def test_a_killed_shard_resumes_to_an_identical_output(tmp_path, capsys):
    pool = make_pool(f"file://{tmp_path}/in", n=4000, c=400, d=32, files=2)
    ref = f"file://{tmp_path}/ref"
    run_all(pool, ref, 2, capsys)
    out = f"file://{tmp_path}/out"
    assert run_job(retrieve_args(pool, out, 0, 2), capsys)[0] == 0
    # shard 1 is killed after writing its top-k file but before its commit marker
    p = _cli(retrieve_args(pool, out, 1, 2), env={"VLMOPS_BALANCE_FAULT": "retrieve:after-topk"})
    assert p.returncode == 137, p.stderr
    assert not storage.exists(f"{out}/retrieve/shards-00002/shard-00001.json")
    rc, res, err = run_job(balance_args(out, 2), capsys)
    assert rc == 2 and "shard 1 of 2 is not committed" in err
    assert not storage.exists(f"{out}/manifest.json")
    # the restarted pod (JOB_COMPLETION_INDEX) redoes shard 1; shard 0 is skipped on a re-run
    args = [a for a in retrieve_args(pool, out, 1, 2)]
    i = args.index("--shard")
    del args[i:i + 2]
    p = _cli(args, env={"JOB_COMPLETION_INDEX": "1"})
    assert p.returncode == 0, p.stderr
    res1 = parse_result(p.stdout)
    assert res1["shard"] == 1 and res1["skipped"] is False
    rc, res0, err = run_job(retrieve_args(pool, out, 0, 2), capsys)
    assert rc == 0 and res0["skipped"] is True
    p = _cli(balance_args(out, 2))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1].startswith('{"vlmopsResult":')
    assert storage.read_bytes(f"{out}/manifest.json") == storage.read_bytes(f"{ref}/manifest.json")
    # a tampered shard file is detected by its digest and the shard is recomputed
    topk = f"{out}/retrieve/shards-00002/shard-00000.parquet"
    good = storage.read_bytes(topk)
    storage.write_bytes_atomic(topk, good[:-10] + b"0" * 10)
    rc, res0, err = run_job(retrieve_args(pool, out, 0, 2), capsys)
    assert rc == 0 and res0["skipped"] is False
    assert storage.read_bytes(topk) == good
