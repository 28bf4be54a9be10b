"""What earlier steps committed under `--output`, as the later steps read it back."""
from __future__ import annotations

import json
from typing import Any, NamedTuple

import pyarrow as pa
from vlmops_contract.layouts import pack as layout

from ..common import lineage, storage
from ..common.result import JobError
from .tables import read_table

KIND = "PackedDataset"


def lengths_records(output: str, expected_shards: int) -> list[dict]:
    """Every lengths shard's commit record, by shard; all `expected_shards` must be there, from one run."""
    fs, path = storage.get_fs(storage.join(output, layout.LENGTHS_DIR))
    found = fs.find(path) if fs.exists(path) else []
    names = sorted(p for p in found if layout.is_lengths_record(p.rsplit("/", 1)[-1]))
    if not names:
        raise JobError(f"output {output} lengths: no committed lengths shards (run the lengths step first)")
    records = [json.loads(fs.cat_file(p)) for p in names]
    shards = records[0]["parameters"]["shards"]
    if shards != expected_shards:
        raise JobError(f"output {output} lengths: committed by a run with {shards} shards, this plan expects "
                       f"{expected_shards} (--shards): run the lengths step again")
    have = sorted(r["stats"]["shard"] for r in records)
    if have != list(range(shards)) or any(r["parameters"] != records[0]["parameters"] for r in records):
        missing = sorted(set(range(shards)) - set(have))
        raise JobError(f"output {output} lengths: shards {missing} of {shards} missing or from another run")
    return sorted(records, key=lambda r: r["stats"]["shard"])


class Plan(NamedTuple):
    manifest: dict[str, Any]
    table: pa.Table  # sequence, part, row, tokens

    @property
    def capacity(self) -> int:
        return self.manifest["parameters"]["sequenceLength"]

    @property
    def n_sequences(self) -> int:
        return self.manifest["stats"]["sequences"]


def read_plan(output: str) -> Plan:
    manifest = lineage.read_manifest(output, layout.PLAN_MANIFEST)
    if manifest is None:
        raise JobError(f"output {output} plan: no committed plan (run the plan step first)")
    return Plan(manifest, read_table(storage.join(output, layout.PLAN)))


def tar_count(n_sequences: int, per_tar: int) -> int:
    return max(1, -(-n_sequences // per_tar)) if n_sequences else 0


def write_parameters(per_tar: int, fmt: str, plan: Plan) -> dict[str, Any]:
    """What a tar's commit record must match to be reused (and every tar to be finalized)."""
    return {"shardSizeSamples": per_tar, "format": fmt, "plan": plan.manifest["files"][layout.PLAN]}


def committed_tars(output: str, n_tars: int, params: dict[str, Any]) -> list[dict] | None:
    """Every tar's commit record if all `n_tars` are committed with `params`, else None."""
    records = []
    for index in range(n_tars):
        uri = storage.join(output, layout.shard_record(index))
        if not storage.exists(uri):
            return None
        record = storage.read_json(uri)
        if record.get("parameters") != params:
            return None
        records.append(record)
    return records
