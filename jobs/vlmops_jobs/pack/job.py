"""PackedDataset job: `lengths` (sharded) -> `plan` -> `write` (sharded) [-> `finalize`].

Output layout under `--output` (the PackedDataset's `output.uri`; every step takes the same one):

    lengths/part-00000.parquet   id, tokens, textTokens, imageTokens, images (absolute), conversations
    lengths/part-00000.json      per-shard commit record (digest, rows, parameters, input digests)
    plan/plan.parquet            sequence, part, row, tokens (rows grouped by sequence, in order)
    plan/manifest.json           plan commit record (stats, parameters, digests)
    plan/stats.png               length histogram (capacity marked) + fill distribution
    shards/shard-000000.tar      WebDataset tar, one entry per sequence (key seq%09d: json, img<j>.<ext>)
    shards/shard-000000.tar.idx  Energon tar index (uint64 offsets of each entry + end)
    shards/shard-000000.json     per-tar commit record
    .nv-meta/dataset.yaml, split.yaml, .info.yaml, .info.json    (format energon)
    manifest.json                written last, by whichever `write` pod sees every tar committed
                                 (or by an explicit `finalize`)
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import numpy as np

from ..common import lineage, storage
from ..common.result import JobError, emit_result, shard_index
from . import algorithms
from . import lengths as lengths_mod

KIND = "PackedDataset"


def log(msg: str) -> None:
    print(f"[pack] {msg}", file=sys.stderr, flush=True)


def _throughput(step: str, items: int, nbytes: int, seconds: float) -> None:
    s = max(seconds, 1e-9)
    log(f"{step}: {items} items in {seconds:.3f}s = {items / s:.0f} items/s, {nbytes / s:.0f} bytes/s")


def _pq():
    import pyarrow.parquet as pq

    return pq


# ---------------------------------------------------------------------------------------------
# source resolution
# ---------------------------------------------------------------------------------------------
def resolve_source(uri: str) -> list[str]:
    """Parquet file, prefix of parquet files, or a BalancedCorpus output dir (its selected/ parts)."""
    fs, path = storage.get_fs(uri)
    proto = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    if proto == "file://":
        proto = ""
    if fs.isfile(path):
        return [uri]
    if not fs.exists(path):
        raise JobError(f"source {uri}: does not exist")
    base = path.rstrip("/")
    if fs.exists(base + "/selected"):
        base = base + "/selected"
    files = sorted(p for p in fs.find(base) if p.endswith(".parquet") and "/." not in p[len(base):])
    if not files:
        raise JobError(f"source {uri}: no parquet files")
    return [(proto + p) if proto else p for p in files]


def _row_counts(files: list[str]) -> list[int]:
    pq = _pq()
    out = []
    for f in files:
        fs, p = storage.get_fs(f)
        with fs.open(p, "rb") as fh:
            out.append(pq.ParquetFile(fh).metadata.num_rows)
    return out


# ---------------------------------------------------------------------------------------------
# lengths
# ---------------------------------------------------------------------------------------------
def step_lengths(a: argparse.Namespace) -> None:
    import pyarrow as pa

    pq = _pq()
    shard, shards = shard_index(a.shard, a.shards, "lengths"), a.shards
    t0 = time.perf_counter()
    files = resolve_source(a.source)
    tok_path = a.tokenizer[len("file://"):] if a.tokenizer.startswith("file://") else a.tokenizer
    if not os.path.isdir(tok_path):
        raise JobError(f"tokenizer {a.tokenizer}: path does not exist")
    params = {
        "source": a.source, "tokenizer": a.tokenizer, "patchSize": a.patch_size, "mergeSize": a.merge_size,
        "minPixels": a.min_pixels, "maxPixels": a.max_pixels, "shards": shards,
    }
    inputs = {
        "source": [{"uri": f, "digest": storage.sha256_uri(f)} for f in files],
        "tokenizer": {"uri": a.tokenizer, "digest": storage.sha256_uri(os.path.join(tok_path, "tokenizer.json"))},
    }
    part_uri = storage.join(a.output, f"lengths/part-{shard:05d}.parquet")
    rec_uri = storage.join(a.output, f"lengths/part-{shard:05d}.json")
    if storage.exists(rec_uri):
        rec = storage.read_json(rec_uri)
        if rec.get("parameters") == params and rec.get("inputs") == inputs and storage.exists(part_uri) \
                and storage.sha256_uri(part_uri) == rec["files"][f"lengths/part-{shard:05d}.parquet"]:
            log(f"lengths shard {shard}: already committed, reusing")
            emit_result({"stats": rec["stats"], "output": {"uri": part_uri}})
            return

    counts = _row_counts(files)
    total = sum(counts)
    lo, hi = total * shard // shards, total * (shard + 1) // shards
    counter = lengths_mod.TextCounter(tok_path)
    rows: list[dict] = []
    bases: list[str] = []
    off = 0
    for f, n in zip(files, counts):
        a0, a1 = max(lo, off), min(hi, off + n)
        if a0 < a1:
            fs, p = storage.get_fs(f)
            with fs.open(p, "rb") as fh:
                pf = pq.ParquetFile(fh)
                names = pf.schema_arrow.names
                for need in ("id", "conversations"):
                    if need not in names:
                        raise JobError(f"source {f} {need}: column missing")
                cols = [c for c in ("id", "images", "conversations") if c in names]
                t = pf.read(columns=cols).slice(a0 - off, a1 - a0)
            base = f.rsplit("/", 1)[0] if "/" in f else "."
            for r in t.to_pylist():
                r.setdefault("images", [])
                if r["id"] is None or str(r["id"]) == "":
                    raise JobError(f"source {f} id: empty sample id")
                r["id"] = str(r["id"])
                rows.append(r)
                bases.append(base)
        off += n
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise JobError(f"sample {dup} id: duplicate sample id")
    text_tok, img_tok, images, totals, nbytes = lengths_mod.compute(
        rows, bases, counter, patch=a.patch_size, merge=a.merge_size, min_pixels=a.min_pixels, max_pixels=a.max_pixels
    )
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "tokens": pa.array(totals, pa.int32()),
        "textTokens": pa.array(text_tok, pa.int32()),
        "imageTokens": pa.array(img_tok, pa.list_(pa.int32())),
        "images": pa.array(images, pa.list_(pa.string())),
        "conversations": pa.array([r["conversations"] if isinstance(r["conversations"], str) else json.dumps(r["conversations"]) for r in rows], pa.string()),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    digest = storage.write_bytes_atomic(part_uri, buf.getvalue())
    stats = {"samples": len(rows), "tokens": int(totals.sum()), "images": int(sum(len(i) for i in images)),
             "shard": shard, "shards": shards}
    rec = lineage.build_manifest(kind=KIND, step="lengths", inputs=inputs, parameters=params,
                                 files={f"lengths/part-{shard:05d}.parquet": digest}, stats=stats)
    storage.write_json_atomic(rec_uri, rec)
    _throughput("lengths", len(rows), nbytes, time.perf_counter() - t0)
    emit_result({"stats": stats, "output": {"uri": part_uri, "digest": digest}})


# ---------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------
def _lengths_records(output: str) -> list[dict]:
    fs, path = storage.get_fs(storage.join(output, "lengths"))
    recs = sorted(p for p in (fs.find(path) if fs.exists(path) else []) if p.rsplit("/", 1)[-1].startswith("part-") and p.endswith(".json"))
    if not recs:
        raise JobError(f"output {output} lengths: no committed lengths shards (run the lengths step first)")
    out = [json.loads(fs.cat_file(p)) for p in recs]
    shards = out[0]["parameters"]["shards"]
    have = sorted(r["stats"]["shard"] for r in out)
    if have != list(range(shards)) or any(r["parameters"] != out[0]["parameters"] for r in out):
        missing = sorted(set(range(shards)) - set(have))
        raise JobError(f"output {output} lengths: shards {missing} of {shards} missing or from another run")
    return sorted(out, key=lambda r: r["stats"]["shard"])


def step_plan(a: argparse.Namespace) -> None:
    import pyarrow as pa

    pq = _pq()
    t0 = time.perf_counter()
    cap = int(a.sequence_length)
    if cap <= 0:
        raise JobError(f"spec sequenceLength: must be positive, got {cap}")
    recs = _lengths_records(a.output)
    ids_all, tok_all, part_all, row_all = [], [], [], []
    for r in recs:
        s = r["stats"]["shard"]
        uri = storage.join(a.output, f"lengths/part-{s:05d}.parquet")
        fs, p = storage.get_fs(uri)
        with fs.open(p, "rb") as fh:
            t = pq.read_table(fh, columns=["id", "tokens"])
        ids_all.append(t.column("id"))
        tk = t.column("tokens").to_numpy().astype(np.int64)
        tok_all.append(tk)
        part_all.append(np.full(tk.size, s, np.int32))
        row_all.append(np.arange(tk.size, dtype=np.int32))
    L = np.concatenate(tok_all) if tok_all else np.zeros(0, np.int64)
    part = np.concatenate(part_all)
    row = np.concatenate(row_all)
    ids = pa.chunked_array([c for ch in ids_all for c in ch.chunks], pa.string())
    import pyarrow.compute as pc

    if len(pc.unique(ids)) != len(ids):
        vc = pc.value_counts(ids)
        dup = next(v["values"] for v in vc.to_pylist() if v["counts"] > 1)
        raise JobError(f"sample {dup} id: duplicate sample id across lengths shards")
    n = int(L.size)
    too_long = L > cap
    n_long = int(too_long.sum())
    if n and n_long == n and not a.truncate:
        raise JobError(f"spec sequenceLength: {cap} is smaller than every sample (shortest {int(L.min())} tokens)")
    eff = np.minimum(L, cap) if a.truncate else L
    t1 = time.perf_counter()
    packing = algorithms.pack(eff, cap, a.algorithm, closing=a.closing_pass)
    t_plan = time.perf_counter() - t1
    placed = packing.order
    seq = packing.bin_of[placed]
    tokens = int(eff[placed].sum())
    n_seq = packing.n_bins
    stats = {
        "samples": n,
        "sequences": n_seq,
        "lowerBoundSequences": -(-tokens // cap) if tokens else 0,
        "compressionRatio": round(placed.size / n_seq, 4) if n_seq else 0.0,
        "packingEfficiency": round(tokens / (n_seq * cap), 6) if n_seq else 0.0,
        "tokens": tokens,
        "paddingTokens": n_seq * cap - tokens,
        "droppedTooLong": 0 if a.truncate else n_long,
    }
    if a.truncate:
        stats["truncated"] = n_long
    table = pa.table({
        "sequence": pa.array(seq.astype(np.int32)),
        "part": pa.array(part[placed]),
        "row": pa.array(row[placed]),
        "tokens": pa.array(eff[placed].astype(np.int32)),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=1 << 20)
    plan_uri = storage.join(a.output, "plan/plan.parquet")
    files = {"plan/plan.parquet": storage.write_bytes_atomic(plan_uri, buf.getvalue())}
    png = _plot(L, packing.loads, cap)
    if png is not None:
        files["plan/stats.png"] = storage.write_bytes_atomic(storage.join(a.output, "plan/stats.png"), png)
    params = {"sequenceLength": cap, "algorithm": a.algorithm, "truncate": bool(a.truncate), "closingPass": bool(a.closing_pass)}
    inputs = {"lengths": [{"uri": f"lengths/part-{r['stats']['shard']:05d}.parquet",  # relative to the output
                           "digest": r["files"][f"lengths/part-{r['stats']['shard']:05d}.parquet"]} for r in recs]}
    man = lineage.build_manifest(kind=KIND, step="plan", inputs=inputs, parameters=params, files=files, stats=stats)
    out = lineage.commit_manifest(a.output, man, name="plan/manifest.json")
    log(f"plan: {a.algorithm} packed {n} samples into {n_seq} sequences in {t_plan:.3f}s "
        f"({n / max(t_plan, 1e-9):.0f} items/s, {L.nbytes / max(t_plan, 1e-9):.0f} bytes/s); "
        f"lower bound {stats['lowerBoundSequences']}")
    _throughput("plan (total)", n, L.nbytes, time.perf_counter() - t0)
    emit_result({"stats": stats, "output": out})


def _plot(lengths: np.ndarray, loads: np.ndarray, cap: int) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # matplotlib is optional for the plan itself
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if lengths.size:
        hi = max(int(lengths.max()), cap)
        ax1.hist(lengths, bins=np.linspace(0, hi * 1.02, 80), color="#4c72b0")
    ax1.axvline(cap, color="#c44e52", ls="--", label=f"capacity {cap}")
    ax1.set_xlabel("sample length (tokens)")
    ax1.set_ylabel("samples")
    ax1.set_yscale("log")
    ax1.legend()
    if loads.size:
        ax2.hist(loads / cap, bins=np.linspace(0, 1, 51), color="#55a868")
    ax2.set_xlabel("sequence fill (tokens / capacity)")
    ax2.set_ylabel("sequences")
    ax2.set_yscale("log")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# write
# ---------------------------------------------------------------------------------------------
def _plan(output: str):
    pq = _pq()
    man = lineage.read_manifest(output, "plan/manifest.json")
    if man is None:
        raise JobError(f"output {output} plan: no committed plan (run the plan step first)")
    uri = storage.join(output, "plan/plan.parquet")
    fs, p = storage.get_fs(uri)
    with fs.open(p, "rb") as fh:
        t = pq.read_table(fh)
    return man, t


def _layout(n_seq: int, per_shard: int, shards: int):
    n_tars = max(1, -(-n_seq // per_shard)) if n_seq else 0
    return n_tars


def _write_one_tar(output: str, j: int, seq_lo: int, seq_hi: int, seq_starts: np.ndarray, plan, parts, cap: int) -> dict:
    import webdataset as wds

    buf = io.BytesIO()
    offsets = []
    n_samples = 0
    img_bytes = 0
    tw = wds.TarWriter(buf, user="vlmops", group="vlmops", mode=0o444, mtime=0.0, encoder=False)
    for q in range(seq_lo, seq_hi):
        a0, a1 = seq_starts[q], seq_starts[q + 1]
        members = {"__key__": f"seq{q:09d}"}
        samples = []
        cu = [0]
        k = 0
        for part_id, row_id, tok in zip(plan["part"][a0:a1], plan["row"][a0:a1], plan["tokens"][a0:a1]):
            rec = parts[int(part_id)][int(row_id)]
            names = []
            for u in rec["images"]:
                ext = u.rsplit(".", 1)[-1].lower() if "." in u.rsplit("/", 1)[-1] else "bin"
                name = f"img{k}.{ext}"
                try:
                    data = storage.read_bytes(u)
                except Exception as e:
                    raise JobError(f"sample {rec['id']} images: unreadable image {u} ({e})")
                members[name] = data
                img_bytes += len(data)
                names.append(name)
                k += 1
            s = {"id": rec["id"], "conversations": json.loads(rec["conversations"]), "images": names,
                 "tokens": int(tok), "imageTokens": list(rec["imageTokens"])}
            if int(tok) < int(rec["tokens"]):
                s["truncated"] = True
            samples.append(s)
            cu.append(cu[-1] + int(tok))
            n_samples += 1
        meta = {"sequence": q, "capacity": cap, "tokens": cu[-1], "samples": samples, "cuSeqlens": cu}
        members["json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
        offsets.append(tw.tarstream.offset)
        tw.write(members)
    offsets.append(tw.tarstream.offset)
    tw.close()
    data = buf.getvalue()
    tar_rel = f"shards/shard-{j:06d}.tar"
    d_tar = storage.write_bytes_atomic(storage.join(output, tar_rel), data)
    idx = np.asarray(offsets, dtype="<u8").tobytes()
    d_idx = storage.write_bytes_atomic(storage.join(output, tar_rel + ".idx"), idx)
    return {"tar": tar_rel, "count": seq_hi - seq_lo, "samples": n_samples, "bytes": len(data),
            "imageBytes": img_bytes, "files": {tar_rel: d_tar, tar_rel + ".idx": d_idx}}


def step_write(a: argparse.Namespace) -> None:
    pq = _pq()
    t0 = time.perf_counter()
    shard, shards = shard_index(a.shard, a.shards, "write"), a.shards
    if a.shard_size_samples <= 0:
        raise JobError(f"spec shardSize.samples: must be positive, got {a.shard_size_samples}")
    man, t = _plan(a.output)
    cap = man["parameters"]["sequenceLength"]
    n_seq = man["stats"]["sequences"]
    per = a.shard_size_samples
    n_tars = _layout(n_seq, per, shards)
    mine = range(n_tars * shard // shards, n_tars * (shard + 1) // shards)
    params = {"shardSizeSamples": per, "format": a.format, "plan": man["files"]["plan/plan.parquet"]}
    seq = t.column("sequence").to_numpy()
    seq_starts = np.searchsorted(seq, np.arange(n_seq + 1))
    plan = {c: t.column(c).to_numpy() for c in ("part", "row", "tokens")}
    todo = []
    for j in mine:
        rec_uri = storage.join(a.output, f"shards/shard-{j:06d}.json")
        if storage.exists(rec_uri) and storage.read_json(rec_uri).get("parameters") == params:
            log(f"write: tar {j} already committed, reusing")
            continue
        todo.append(j)
    parts: dict[int, list[dict]] = {}
    if todo:
        lo_seq, hi_seq = todo[0] * per, min(n_seq, (todo[-1] + 1) * per)
        need = np.unique(plan["part"][seq_starts[lo_seq]:seq_starts[hi_seq]])
        for pid in need.tolist():
            uri = storage.join(a.output, f"lengths/part-{pid:05d}.parquet")
            fs, p = storage.get_fs(uri)
            with fs.open(p, "rb") as fh:
                parts[pid] = pq.read_table(fh, columns=["id", "tokens", "imageTokens", "images", "conversations"]).to_pylist()
    nbytes = n_items = 0
    for j in todo:
        info = _write_one_tar(a.output, j, j * per, min(n_seq, (j + 1) * per), seq_starts, plan, parts, cap)
        nbytes += info["bytes"]
        n_items += info["samples"]
        storage.write_json_atomic(storage.join(a.output, f"shards/shard-{j:06d}.json"), {
            "parameters": params, "tar": info["tar"], "count": info["count"], "samples": info["samples"],
            "bytes": info["bytes"], "files": info["files"]})
    _throughput(f"write shard {shard}", n_items, nbytes, time.perf_counter() - t0)
    # the pod that sees every tar committed writes the metadata and the manifest (idempotent)
    done = _committed_tars(a.output, n_tars, params)
    if done is not None and not a.no_finalize:
        out, stats = _finalize(a, man, done, params)
        emit_result({"stats": stats, "output": out})
    else:
        emit_result({"stats": {"shard": shard, "tars": len(mine), "samplesWritten": n_items, "bytes": nbytes},
                     "output": {"uri": a.output.rstrip("/")}})


def _committed_tars(output: str, n_tars: int, params: dict) -> list[dict] | None:
    recs = []
    for j in range(n_tars):
        uri = storage.join(output, f"shards/shard-{j:06d}.json")
        if not storage.exists(uri):
            return None
        r = storage.read_json(uri)
        if r.get("parameters") != params:
            return None
        recs.append(r)
    return recs


def _finalize(a: argparse.Namespace, plan_man: dict, recs: list[dict], params: dict):
    import yaml

    files: dict[str, str] = {}
    for r in recs:
        files.update(r["files"])
    files.update(plan_man["files"])
    files["plan/manifest.json"] = storage.sha256_uri(storage.join(a.output, "plan/manifest.json"))
    if a.format == "energon":
        tars = [r["tar"] for r in recs]
        dataset = {"__module__": "megatron.energon", "__class__": "CrudeWebdataset",
                   "subflavors": {"vlmops_packed": True, "sequenceLength": plan_man["parameters"]["sequenceLength"]}}
        split = {"split_parts": {"train": tars, "val": [], "test": []}, "exclude": []}
        info = {"energon_version": "7.4.1", "shard_counts": {r["tar"]: r["count"] for r in recs}}
        meta = {
            ".nv-meta/dataset.yaml": yaml.safe_dump(dataset, sort_keys=True).encode(),
            ".nv-meta/split.yaml": yaml.safe_dump(split, sort_keys=False).encode(),
            ".nv-meta/.info.yaml": yaml.safe_dump(info, sort_keys=False).encode(),
            ".nv-meta/.info.json": (json.dumps(info, indent=2) + "\n").encode(),
        }
        for rel, data in meta.items():
            files[rel] = storage.write_bytes_atomic(storage.join(a.output, rel), data)
    stats = dict(plan_man["stats"])
    lengths_inputs = plan_man["inputs"]
    first = storage.read_json(storage.join(a.output, "lengths/part-00000.json"))
    inputs = {"source": first["inputs"]["source"], "tokenizer": first["inputs"]["tokenizer"],
              "lengths": lengths_inputs["lengths"]}
    parameters = {**first["parameters"], **plan_man["parameters"], **params}
    parameters.pop("plan", None)
    stats["shards"] = len(recs)
    man = lineage.build_manifest(kind=KIND, step="write", inputs=inputs, parameters=parameters, files=files, stats=stats)
    out = lineage.commit_manifest(a.output, man)
    return out, stats


def step_finalize(a: argparse.Namespace) -> None:
    man, _t = _plan(a.output)
    if a.shard_size_samples is None:
        first = storage.join(a.output, "shards/shard-000000.json")
        if not storage.exists(first):
            raise JobError(f"output {a.output} shards: no committed tar (run the write step first)")
        a.shard_size_samples = storage.read_json(first)["parameters"]["shardSizeSamples"]
    n_tars = _layout(man["stats"]["sequences"], a.shard_size_samples, 1)
    params = {"shardSizeSamples": a.shard_size_samples, "format": a.format, "plan": man["files"]["plan/plan.parquet"]}
    recs = _committed_tars(a.output, n_tars, params)
    if recs is None:
        raise JobError(f"output {a.output} shards: not every tar is committed (run every write shard first)")
    out, stats = _finalize(a, man, recs, params)
    emit_result({"stats": stats, "output": out})


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vlmops_jobs.pack", description="PackedDataset job")
    sub = ap.add_subparsers(dest="step", required=True)

    p = sub.add_parser("lengths", help="token length per sample (sharded)")
    p.add_argument("--source", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--patch-size", type=int, default=14)
    p.add_argument("--merge-size", type=int, default=2)
    p.add_argument("--min-pixels", type=int, default=3136)
    p.add_argument("--max-pixels", type=int, default=2560000)
    p.add_argument("--shard", type=int, default=None)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--output", required=True)

    p = sub.add_parser("plan", help="pack lengths into sequences (one invocation)")
    p.add_argument("--sequence-length", type=int, default=8192)
    p.add_argument("--algorithm", choices=sorted(algorithms.ALGORITHMS), default="BestFitDecreasing")
    p.add_argument("--truncate", action="store_true")
    p.add_argument("--closing-pass", dest="closing_pass", action="store_true", default=True,
                   help="closing pass on the length histogram (default on; kept only if it uses strictly fewer sequences)")
    p.add_argument("--no-closing-pass", dest="closing_pass", action="store_false")
    p.add_argument("--shards", type=int, default=1, help="accepted for symmetry with the builders; unused")
    p.add_argument("--output", required=True)

    for name in ("write", "finalize"):
        p = sub.add_parser(name, help="write tar shards (sharded)" if name == "write" else "write .nv-meta + manifest")
        # finalize: default = the value the write pods recorded in shards/shard-000000.json
        p.add_argument("--shard-size-samples", type=int, default=10000 if name == "write" else None)
        p.add_argument("--format", choices=["energon", "webdataset"], default="energon")
        p.add_argument("--output", required=True)
        p.add_argument("--shards", type=int, default=1)
        if name == "write":
            p.add_argument("--shard", type=int, default=None)
            p.add_argument("--no-finalize", action="store_true", help="never write the manifest from this pod")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    {"lengths": step_lengths, "plan": step_plan, "write": step_write, "finalize": step_finalize}[a.step](a)
