"""Argument groups more than one step takes (flags are the kebab-case spec fields, api.md)."""
from __future__ import annotations

import argparse


def add_inputs(p: argparse.ArgumentParser) -> None:
    """The sample source and the concept vocabulary (embed, retrieve)."""
    p.add_argument("--source", required=True)
    p.add_argument("--id-field", default="id")
    p.add_argument("--concepts", required=True)
    p.add_argument("--concept-text-field", default="text")


def add_sharded_output(p: argparse.ArgumentParser) -> None:
    """`--output` and which shard this pod is (embed, retrieve: Indexed Jobs)."""
    p.add_argument("--output", required=True)
    p.add_argument("--shard", type=int, default=None, help="default: $JOB_COMPLETION_INDEX")
    p.add_argument("--shards", type=int, default=1)
