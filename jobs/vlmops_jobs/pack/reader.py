"""The one reader of packed shards (`shards/shard-*.tar` under a PackedDataset's output).

Indexes every tar once (the byte range of each member of each entry), then reads any sequence
by number without unpacking the tar: the trainer's loader (`train.data.PackedShards`) and the
tests read through it. Energon users: `vlmops_jobs.pack.energon`.
"""
from __future__ import annotations

import json
import tarfile
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from vlmops_contract.layouts import pack as layout

from ..common import storage
from ..common.result import JobError


@dataclass
class Entry:
    shard: int  # index into `PackedShardReader.shards`
    key: str    # seq%09d
    members: dict[str, tuple[int, int]]  # member name (json, img<j>.<ext>) -> (offset, size) in the tar


def find_shards(fs, base: str) -> list[str]:
    """The tars under `base` (a path on `fs`), in name order."""
    try:
        return sorted(fs.glob(f"{base.rstrip('/')}/{layout.SHARDS_DIR}/{layout.SHARD_TAR_GLOB}"))
    except FileNotFoundError:
        return []


def index_tar(fs, path: str, shard: int) -> list[Entry]:
    """The tar's entries with a JSON member, in tar order, from its headers."""
    members: dict[str, dict[str, tuple[int, int]]] = {}
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, name = info.name.rsplit("/", 1)[-1].partition(".")
            members.setdefault(key, {})[name] = (info.offset_data, info.size)
    return [Entry(shard, key, m) for key, m in members.items() if layout.SEQUENCE_JSON in m]


class PackedShardReader:
    """Random access to the packed sequences of `uri` (every tar's entries, in tar and name order)."""

    def __init__(self, uri: str, label: str = "packed dataset"):
        self.uri = uri.rstrip("/")
        self.fs, base = storage.get_fs(self.uri)
        self.shards = find_shards(self.fs, base)
        if not self.shards:
            raise JobError(f"{label} {uri}: no shards under {self.uri}/{layout.SHARDS_DIR}/ ({layout.SHARD_TAR_GLOB})")
        self.entries = [e for i, path in enumerate(self.shards) for e in index_tar(self.fs, path, i)]
        if not self.entries:
            raise JobError(f"{label} {uri}: shards hold no sequences")
        self._handles: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, i: int) -> dict[str, bytes]:
        """Sequence i's members: `json` and `img<j>.<ext>` -> bytes."""
        entry = self.entries[i]
        with self._lock:
            f = self._handles.get(entry.shard)
            if f is None:
                f = self._handles[entry.shard] = self.fs.open(self.shards[entry.shard], "rb")
            out = {}
            for name, (offset, size) in entry.members.items():
                f.seek(offset)
                out[name] = f.read(size)
        return out

    def meta(self, i: int) -> dict[str, Any]:
        """Sequence i's JSON (sequence, capacity, tokens, cuSeqlens, samples)."""
        return json.loads(self.read(i)[layout.SEQUENCE_JSON])

    def __iter__(self) -> Iterator[dict[str, bytes]]:
        return (self.read(i) for i in range(len(self)))

    @property
    def manifest_uri(self) -> str:
        return storage.join(self.uri, layout.MANIFEST)
