"""CLI: python -m vlmops_jobs.balance {embed,retrieve,balance} ... (see docs/jobs-balance.md)."""
from __future__ import annotations

import argparse

from vlmops_jobs.common.result import JobError, emit_result, exit_now, run_main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are bad input too: one line, exit 2
        raise JobError(f"arguments: {message}")


def _shard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", type=int, default=None, help="default: $JOB_COMPLETION_INDEX")
    p.add_argument("--shards", type=int, default=1)


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m vlmops_jobs.balance", description="BalancedCorpus job")
    sub = ap.add_subparsers(dest="step", required=True, parser_class=_Parser)

    e = sub.add_parser("embed", help="embed images and concept texts with a local CLIP-family model")
    e.add_argument("--source", required=True)
    e.add_argument("--id-field", default="id")
    e.add_argument("--image-field", default="images")
    e.add_argument("--concepts", required=True)
    e.add_argument("--concept-text-field", default="text")
    e.add_argument("--embedder", "--model", dest="embedder", required=True,
                   help="local directory (or URI) of a CLIP-family model; no hub access")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--output", required=True)
    _shard_args(e)

    r = sub.add_parser("retrieve", help="one shard: top-k concepts per sample and per-shard counts")
    r.add_argument("--source", required=True)
    r.add_argument("--id-field", default="id")
    r.add_argument("--embedding-field", default="embedding")
    r.add_argument("--concepts", required=True)
    r.add_argument("--concept-text-field", default="text")
    r.add_argument("--concept-embedding-field", default="embedding")
    r.add_argument("--top-k", type=int, default=5)
    r.add_argument("--index", default="Flat", help="faiss factory string")
    r.add_argument("--nprobe", type=int, default=None)
    r.add_argument("--min-similarity", type=float, default=-1.0)
    r.add_argument("--recall-sample", type=int, default=1000)
    r.add_argument("--embedded", action="store_true",
                   help="read the embed step's output (<output>/embed/shards-<N>/) instead of --source/--concepts")
    r.add_argument("--output", required=True)
    _shard_args(r)

    b = sub.add_parser("balance", help="reduce: sum counts, solve t, select, write manifest")
    b.add_argument("--method", default="MetaCLIP", help="MetaCLIP | InverseFrequency")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None)
    g.add_argument("--target-samples", type=int, default=None)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--default-threshold", type=float, default=20000.0,
                   help="t when neither --threshold nor --target-samples is given (MetaCLIP's t=20k)")
    b.add_argument("--shards", type=int, default=1, help="shard count of the retrieve step")
    b.add_argument("--part-rows", type=int, default=1_000_000, help="selected rows per part file")
    b.add_argument("--output", required=True)
    # optional cross-checks against what the retrieve shards recorded
    b.add_argument("--source", default=None)
    b.add_argument("--id-field", default=None)
    b.add_argument("--embedding-field", default=None)
    b.add_argument("--concepts", default=None)
    return ap


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    if a.step == "embed":
        from .embed import run_embed

        emit_result(run_embed(a))
    elif a.step == "retrieve":
        from .retrieve import run_retrieve

        emit_result(run_retrieve(a))
    else:
        from .reduce import run_balance

        if a.part_rows < 1:
            raise JobError(f"balance part-rows: {a.part_rows} must be >= 1")
        emit_result(run_balance(a))


if __name__ == "__main__":
    exit_now(run_main(main))
