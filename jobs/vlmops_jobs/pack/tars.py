"""One WebDataset tar of packed sequences, its Energon index, and what its commit record holds.

A sequence is one tar entry, key `seq%09d`: `json` (sequence, capacity, tokens, cuSeqlens,
samples) and `img<j>.<ext>` (the source image bytes, numbered across the sequence). The tar is
deterministic (mtime 0, fixed owner), so re-runs write identical bytes.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from vlmops_contract.layouts import pack as layout

from ..common import storage
from ..common.result import JobError


class PlannedSequences:
    """The plan's rows by sequence: sequence q is rows [starts[q], starts[q + 1])."""

    def __init__(self, table, n_sequences: int):
        self.n = n_sequences
        self.starts = np.searchsorted(table.column("sequence").to_numpy(), np.arange(n_sequences + 1))
        self.part, self.row, self.tokens = (table.column(c).to_numpy() for c in ("part", "row", "tokens"))

    def parts_of(self, first: int, stop: int) -> list[int]:
        """The lengths parts the sequences [first, stop) take samples from."""
        return np.unique(self.part[self.starts[first] : self.starts[stop]]).tolist()

    def members(self, sequence: int) -> list[tuple[int, int, int]]:
        """(part, row, tokens) of each sample of `sequence`, in order."""
        lo, hi = self.starts[sequence], self.starts[sequence + 1]
        return [(int(p), int(r), int(t)) for p, r, t in zip(self.part[lo:hi], self.row[lo:hi], self.tokens[lo:hi])]


@dataclass
class WrittenTar:
    tar: str             # output-relative
    count: int           # sequences
    samples: int
    bytes: int
    files: dict[str, str]  # tar and index -> digest

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        """The tar's commit record (shards/shard-<j>.json)."""
        return {"parameters": params, "tar": self.tar, "count": self.count, "samples": self.samples,
                "bytes": self.bytes, "files": self.files}


def _image_ext(uri: str) -> str:
    return uri.rsplit(".", 1)[-1].lower() if "." in uri.rsplit("/", 1)[-1] else "bin"


def _sequence_entry(sequence: int, planned: PlannedSequences, rows: dict[int, list[dict]], capacity: int) -> dict:
    """The sequence's tar members (`__key__`, `json`, images)."""
    members: dict[str, Any] = {"__key__": layout.sequence_key(sequence)}
    samples = []
    cu_seqlens = [0]
    n_images = 0
    for part, row, tokens in planned.members(sequence):
        rec = rows[part][row]
        names = []
        for uri in rec["images"]:
            name = layout.image_member(n_images, _image_ext(uri))
            try:
                members[name] = storage.read_bytes(uri)
            except Exception as e:
                raise JobError(f"sample {rec['id']} images: unreadable image {uri} ({e})")
            names.append(name)
            n_images += 1
        sample = {"id": rec["id"], "conversations": json.loads(rec["conversations"]), "images": names,
                  "tokens": tokens, "imageTokens": list(rec["imageTokens"])}
        if tokens < int(rec["tokens"]):
            sample["truncated"] = True
        samples.append(sample)
        cu_seqlens.append(cu_seqlens[-1] + tokens)
    meta = {"sequence": sequence, "capacity": capacity, "tokens": cu_seqlens[-1], "samples": samples, "cuSeqlens": cu_seqlens}
    members[layout.SEQUENCE_JSON] = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
    return members


def write_tar(output: str, index: int, sequences: range, planned: PlannedSequences, rows: dict[int, list[dict]],
              capacity: int) -> WrittenTar:
    """Tar `index` holding `sequences`, and its Energon index (uint64 offset of each entry, then the end)."""
    import webdataset as wds

    buf = io.BytesIO()
    offsets = []
    n_samples = 0
    writer = wds.TarWriter(buf, user="vlmops", group="vlmops", mode=0o444, mtime=0.0, encoder=False)
    for q in sequences:
        entry = _sequence_entry(q, planned, rows, capacity)
        n_samples += int(planned.starts[q + 1] - planned.starts[q])
        offsets.append(writer.tarstream.offset)
        writer.write(entry)
    offsets.append(writer.tarstream.offset)
    writer.close()
    data = buf.getvalue()
    tar, tar_index = layout.shard_tar(index), layout.shard_tar_index(index)
    files = {tar: storage.write_bytes_atomic(storage.join(output, tar), data),
             tar_index: storage.write_bytes_atomic(storage.join(output, tar_index),
                                                   np.asarray(offsets, dtype="<u8").tobytes())}
    return WrittenTar(tar=tar, count=len(sequences), samples=n_samples, bytes=len(data), files=files)
