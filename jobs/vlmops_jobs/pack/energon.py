"""Reading packed shards through Megatron-Energon (the dataset is a `CrudeWebdataset`).

Energon hands each tar entry to a cooker as a dict; use `cook_packed` in a task encoder:

    from megatron.energon import DefaultTaskEncoder, Cooker
    from vlmops_jobs.pack.energon import cook_packed
    class MyEncoder(DefaultTaskEncoder):
        cookers = [Cooker(cook_packed)]

`sample.meta` is the entry's JSON (sequence, capacity, tokens, cuSeqlens, samples[...]) and
`sample.images` maps `img<j>.<ext>` to the image as energon's decoder returns it
(`image_decode=...` of the dataset loader; raw bytes when decoding is off). Without energon,
`vlmops_jobs.pack.reader` reads the same tars.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from megatron.energon import Sample, basic_sample_keys, stateless
from vlmops_contract.layouts import pack as layout


@dataclass
class PackedSequence(Sample):
    meta: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)


@stateless
def cook_packed(raw: dict[str, Any]) -> PackedSequence:
    meta = raw[layout.SEQUENCE_JSON]
    if isinstance(meta, (bytes, str)):  # energon's default decoder already parses .json
        meta = json.loads(meta)
    images = {k: v for k, v in raw.items() if k.startswith(layout.IMAGE_PREFIX)}
    return PackedSequence(**basic_sample_keys(raw), meta=meta, images=images)
