"""Write .nv-meta/ and manifest.json once every tar is committed (what the last write pod does).

Fails (exit 2) if a tar of the plan is missing or was written with other write flags.
"""
from __future__ import annotations

import json
from typing import Any

from vlmops_contract.layouts import pack as layout

from ..common import lineage, storage
from ..common.result import JobError
from .committed import KIND, Plan, committed_tars, read_plan, tar_count, write_parameters


def add_format_arguments(p, shard_size_default: int | None) -> None:
    """The flags write and finalize share (they must be the same in every write pod and in finalize)."""
    p.add_argument("--shard-size-samples", type=int, default=shard_size_default)
    p.add_argument("--format", choices=["energon", "webdataset"], default="energon")
    p.add_argument("--output", required=True)
    p.add_argument("--shards", type=int, default=1)


def add_arguments(p) -> None:
    # default: the value the write pods recorded in shards/shard-000000.json
    add_format_arguments(p, shard_size_default=None)


def _energon_metadata(records: list[dict], capacity: int) -> dict[str, bytes]:
    """.nv-meta/ for Megatron-Energon: a CrudeWebdataset, every tar in `train`."""
    import yaml

    tars = [r["tar"] for r in records]
    dataset = {"__module__": "megatron.energon", "__class__": "CrudeWebdataset",
               "subflavors": {"vlmops_packed": True, "sequenceLength": capacity}}
    split = {"split_parts": {"train": tars, "val": [], "test": []}, "exclude": []}
    info = {"energon_version": "7.4.1", "shard_counts": {r["tar"]: r["count"] for r in records}}
    return {
        layout.ENERGON_DATASET: yaml.safe_dump(dataset, sort_keys=True).encode(),
        layout.ENERGON_SPLIT: yaml.safe_dump(split, sort_keys=False).encode(),
        layout.ENERGON_INFO_YAML: yaml.safe_dump(info, sort_keys=False).encode(),
        layout.ENERGON_INFO_JSON: (json.dumps(info, indent=2) + "\n").encode(),
    }


def finalize(output: str, fmt: str, plan: Plan, records: list[dict], params: dict[str, Any]) -> dict[str, Any]:
    """Write the metadata and the manifest (idempotent: a late duplicate writes the same bytes);
    returns the result."""
    files: dict[str, str] = {}
    for record in records:
        files.update(record["files"])
    files.update(plan.manifest["files"])
    files[layout.PLAN_MANIFEST] = storage.sha256_uri(storage.join(output, layout.PLAN_MANIFEST))
    if fmt == "energon":
        for rel, data in _energon_metadata(records, plan.capacity).items():
            files[rel] = storage.write_bytes_atomic(storage.join(output, rel), data)
    first = storage.read_json(storage.join(output, layout.lengths_record(0)))
    inputs = {"source": first["inputs"]["source"], "tokenizer": first["inputs"]["tokenizer"],
              "lengths": plan.manifest["inputs"]["lengths"]}
    parameters = {**first["parameters"], **plan.manifest["parameters"], **params}
    parameters.pop("plan", None)
    locations = dict(first.get("locations") or {})
    stats = {**plan.manifest["stats"], "shards": len(records)}
    manifest = lineage.build_manifest(kind=KIND, step="write", inputs=inputs, parameters=parameters, files=files,
                                      stats=stats, locations=locations)
    return {"stats": stats, "output": lineage.commit_manifest(output, manifest)}


def run(args) -> dict[str, Any]:
    plan = read_plan(args.output)
    per_tar = args.shard_size_samples
    if per_tar is None:
        first = storage.join(args.output, layout.shard_record(0))
        if not storage.exists(first):
            raise JobError(f"output {args.output} shards: no committed tar (run the write step first)")
        per_tar = storage.read_json(first)["parameters"]["shardSizeSamples"]
    params = write_parameters(per_tar, args.format, plan)
    records = committed_tars(args.output, tar_count(plan.n_sequences, per_tar), params)
    if records is None:
        raise JobError(f"output {args.output} shards: not every tar is committed (run every write shard first)")
    return finalize(args.output, args.format, plan, records, params)
