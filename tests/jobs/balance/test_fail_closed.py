"""The balance step fails closed: a target larger than the corpus, a committed shard missing a file,
a moved output, a re-balance killed midway, stray parts. Each case exited 0, crashed or let a
reader see the wrong files before."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vlmops_jobs.common import lineage, storage
from vlmops_jobs.common.result import JobError
from vlmops_jobs.pack.source import resolve_source

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_pool import balance_args, make_pool, retrieve_args, run_all, run_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return make_pool(f"file://{tmp_path_factory.mktemp('fc')}", n=3000, c=200, d=16, files=2)


def _error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _cli(args, env=None):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "jobs"), str(ROOT / "operator")]),
             OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "vlmops_jobs.balance", *args], capture_output=True, text=True,
                          env=e, cwd=ROOT, timeout=120)


def _target(output: str, shards: int, n: int) -> list[str]:
    args = balance_args(output, shards)
    i = args.index("--threshold")
    return args[:i] + ["--target-samples", str(n)] + args[i + 2:]


def _manifest_files_verify(output: str) -> dict[str, str]:
    files = lineage.read_manifest(output)["files"]
    for name, digest in files.items():
        assert storage.sha256_uri(storage.join(output, name)) == digest, name
    return files


def _selected_on_disk(output: str) -> list[str]:
    fs, path = storage.get_fs(storage.join(output, "selected"))
    fs.invalidate_cache()
    return sorted("selected/" + p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


def test_a_target_larger_than_what_can_be_kept_is_refused_with_the_numbers(pool, tmp_path, capsys):
    out = f"file://{tmp_path}/out"
    run_all(pool, out, 1, capsys)
    before = storage.read_bytes(f"{out}/manifest.json")
    rc, res, err = run_job(_target(out, 1, pool["n"] + 500), capsys)
    assert rc == 2 and res is None
    line = _error_line(err)
    assert f"balancing targetSamples: {pool['n'] + 500} is more than the " in line and "input samples" in line
    assert storage.read_bytes(f"{out}/manifest.json") == before  # refused before anything is written
    # exactly what can be kept is a valid target: everything with a concept
    keepable = int(line.split("more than the ")[1].split(" samples")[0])
    rc, res, err = run_job(_target(out, 1, keepable), capsys)
    assert rc == 0, err
    assert res["stats"]["selectedSamples"] == keepable
    rc, res, err = run_job(_target(out, 1, keepable + 1), capsys)
    assert rc == 2 and f"more than the {keepable} samples" in _error_line(err)


def test_a_committed_shard_whose_file_is_missing_is_bad_input_not_a_crash(pool, tmp_path, capsys):
    out = f"file://{tmp_path}/out"
    for i in range(2):
        assert run_job(retrieve_args(pool, out, i, 2), capsys)[0] == 0
    topk = tmp_path / "out" / "retrieve" / "shards-00002" / "shard-00001.parquet"
    topk.unlink()
    rc, res, err = run_job(balance_args(out, 2), capsys)
    assert rc == 2 and res is None
    assert "shard 1 of 2 is committed but its file" in _error_line(err) and "is missing" in _error_line(err)
    assert "Traceback" not in err
    assert not storage.exists(f"{out}/manifest.json")


def test_a_moved_output_balances_from_where_it_is_now(pool, tmp_path, capsys):
    ref = f"file://{tmp_path}/ref"
    _, ref_res, _ = run_all(pool, ref, 2, capsys)
    first = tmp_path / "first"
    for i in range(2):
        assert run_job(retrieve_args(pool, f"file://{first}", i, 2), capsys)[0] == 0
    moved = tmp_path / "moved"
    shutil.move(str(first), str(moved))  # the markers still name files under first/
    rc, res, err = run_job(balance_args(f"file://{moved}", 2), capsys)
    assert rc == 0, err
    assert res["output"]["identity"] == ref_res["output"]["identity"]
    _manifest_files_verify(f"file://{moved}")


def test_a_rebalance_killed_midway_leaves_no_manifest_and_a_rerun_commits(pool, tmp_path, capsys):
    out = f"file://{tmp_path}/out"
    run_all(pool, out, 1, capsys)
    old_parts = set(_manifest_files_verify(out))
    # re-balance with another t (smaller parts: more of them), killed after writing its parts
    args = [*balance_args(out, 1), "--part-rows", "300"]
    args = args[: args.index("--threshold") + 1] + ["15"] + args[args.index("--threshold") + 2 :]
    p = _cli(args, env={"VLMOPS_BALANCE_FAULT": "balance:after-parts"})
    assert p.returncode == 137, p.stderr
    # the old manifest would name files that were overwritten: it is gone, and readers refuse the output
    assert not storage.exists(f"{out}/manifest.json")
    with pytest.raises(JobError, match="BalancedCorpus output is not committed"):
        resolve_source(out)
    rc, res, err = run_job(args, capsys)
    assert rc == 0, err
    files = _manifest_files_verify(out)
    assert files != old_parts
    assert _selected_on_disk(out) == sorted(f for f in files if f.startswith("selected/"))


def test_readers_take_the_manifest_parts_and_a_rerun_removes_a_stray_part(pool, tmp_path, capsys):
    out = f"file://{tmp_path}/out"
    run_all(pool, out, 1, capsys, balance_extra=("--part-rows", "400"))
    parts = sorted(f for f in lineage.read_manifest(out)["files"] if f.startswith("selected/"))
    assert len(parts) >= 2
    stray = tmp_path / "out" / "selected" / "part-00099.parquet"
    shutil.copy(tmp_path / "out" / parts[0], stray)
    source = resolve_source(out)
    assert [u.rsplit("/", 1)[-1] for u in source.files] == [p.rsplit("/", 1)[-1] for p in parts]
    assert set(source.digests.values()) <= set(lineage.read_manifest(out)["files"].values())
    rc, res, err = run_job(balance_args(out, 1, "--part-rows", "400"), capsys)
    assert rc == 0 and "skipping" in err
    assert not stray.exists()
    assert _selected_on_disk(out) == parts
    # a part rewritten behind the manifest's back is refused when read
    table = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/{parts[0]}")))
    pq.write_table(table.slice(1), str(tmp_path / "out" / parts[0]))
    from vlmops_jobs.pack.source import read_shard_rows, row_counts
    source = resolve_source(out)
    with pytest.raises(JobError, match="does not match the digest its manifest records"):
        read_shard_rows(source, row_counts(source.files), 0, 1)
