"""A small PackedDataset output (docs/contracts.md) for the training tests.

Samples and tokenizer come from vlmops_jobs.common.synthetic; packing here is a plain
first-fit-decreasing over token lengths counted the way the trainer counts them. The tar
layout (`<out>/shards/shard-%06d.tar`, key `seq%09d`, `json` + `img<j>.<ext>`) follows the
contract exactly; a `.nv-meta/` stub and a manifest are written like the packing job's.
"""
from __future__ import annotations

import io
import json
import os
import tempfile

import pyarrow.parquet as pq
from PIL import Image

from vlmops_jobs.common import storage, synthetic
from vlmops_jobs.train.data import ChatTokenizer, image_grid


def make_packed_dataset(out_uri: str, tok_dir: str, n_samples: int = 8, capacity: int = 512, seed: int = 0,
                        per_shard: int = 3) -> dict:
    synthetic.make_tokenizer(tok_dir)
    tok = ChatTokenizer(tok_dir)
    src = tempfile.mkdtemp(prefix="vlmops-train-src-")
    info = synthetic.make_samples(src, n_samples, seed=seed, image_sizes=((32, 32), (64, 48), (48, 96), (120, 80)),
                                  mean_answer_words=12.0)
    table = pq.read_table(info["samples"]).to_pylist()
    samples = []
    for row in table:
        conv = json.loads(row["conversations"])
        ids, _ = tok.encode_conversation(conv)
        imgs, itoks = [], []
        for rel in row["images"]:
            with open(os.path.join(src, rel), "rb") as f:
                data = f.read()
            im = Image.open(io.BytesIO(data))
            gh, gw = image_grid(im.height, im.width, None)
            imgs.append(data)
            itoks.append(gh * gw)
        n = len(ids) - len(imgs) + sum(itoks)
        samples.append({"id": row["id"], "conversations": conv, "images": imgs, "tokens": n, "imageTokens": itoks})
    samples.sort(key=lambda s: -s["tokens"])
    bins: list[list[dict]] = []
    for s in samples:
        assert s["tokens"] <= capacity, s["tokens"]
        for b in bins:
            if sum(x["tokens"] for x in b) + s["tokens"] <= capacity:
                b.append(s)
                break
        else:
            bins.append([s])
    import webdataset as wds

    fs, base = storage.get_fs(out_uri)
    base = base.rstrip("/")
    tmp = tempfile.mkdtemp(prefix="vlmops-train-shards-")
    if not storage._is_object_store(fs):
        fs.makedirs(f"{base}/shards", exist_ok=True)
    shard_names = []
    for si in range(0, len(bins), per_shard):
        name = f"shard-{si // per_shard:06d}.tar"
        local = os.path.join(tmp, name)
        with wds.TarWriter(local) as w:
            for qi, b in enumerate(bins[si: si + per_shard]):
                seq = si + qi
                entry = {"__key__": f"seq{seq:09d}"}
                meta_samples = []
                j = 0
                for s in b:
                    names = []
                    for data in s["images"]:
                        nm = f"img{j}.png"
                        entry[nm] = data
                        names.append(nm)
                        j += 1
                    meta_samples.append({"id": s["id"], "conversations": s["conversations"], "images": names,
                                         "tokens": s["tokens"], "imageTokens": s["imageTokens"]})
                entry["json"] = json.dumps({"sequence": seq, "capacity": capacity,
                                            "tokens": sum(s["tokens"] for s in b), "samples": meta_samples}).encode()
                w.write(entry)
        fs.put_file(local, f"{base}/shards/{name}")
        shard_names.append(name)
    counts = {n: len(bins[i * per_shard:(i + 1) * per_shard]) for i, n in enumerate(shard_names)}
    storage.write_bytes_atomic(storage.join(out_uri, ".nv-meta/.info.yaml"),
                               ("shard_counts:\n" + "".join(f"  shards/{k}: {v}\n" for k, v in counts.items())).encode())
    storage.write_json_atomic(storage.join(out_uri, "manifest.json"), {"kind": "PackedDatasetManifest",
                                                                       "sequences": len(bins)})
    return {"uri": out_uri, "tokenizer": tok_dir, "sequences": len(bins), "samples": n_samples}
