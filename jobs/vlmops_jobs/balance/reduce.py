"""balance: the reduce. Sum per-shard concept counts, solve t, draw, write the selection.

Output (under `--output`):
  selected/part-<j>.parquet   id, [images (absolute URIs), conversations,] concepts list<int32>
  concept-counts.parquet      concept, text, before, after
  stats.json                  the stats block (also in the manifest and the result line)
  plots/concept-frequency.png, plots/kept-by-frequency.png
  manifest.json               written last (lineage.build_manifest)
Nothing here depends on the shard count: rows are in global source order, the draw is a
seeded hash of the id, and part files hold a fixed number of selected rows.
"""
from __future__ import annotations

import io
import json
import math
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmops_jobs.common import lineage, storage
from vlmops_jobs.common.result import JobError

from . import stats as st
from . import tables
from .retrieve import log, shard_names, shard_prefix

METHODS = ("MetaCLIP", "InverseFrequency")
SHARD_ONLY = ("shard", "rows", "inputs", "shards")
# status.stats keys (api.md / BalancedCorpusStats): the result line carries only these; the
# manifest and stats.json carry the extras (keptFraction, expectedSamples, ...) too.
STATUS_KEYS = ("inputSamples", "selectedSamples", "threshold", "before", "after", "retrievalRecall")
SIDE_KEYS = ("conceptsCovered", "conceptsCovered10", "entropyBits", "effectiveConcepts", "gini", "headShare")


def status_stats(stats: dict[str, Any]) -> dict[str, Any]:
    out = {k: stats[k] for k in STATUS_KEYS if stats.get(k) is not None}
    for side in ("before", "after"):
        if side in out:
            out[side] = {k: out[side][k] for k in SIDE_KEYS if k in out[side]}
    return out


# ---------------------------------------------------------------- sampling rule

class Rule:
    """Keep probability per sample as a function of t, for a fixed (n, k) concept matrix."""

    def __init__(self, method: str, conc: np.ndarray, counts: np.ndarray):
        self.method = method
        inv = np.zeros(len(counts) + 1, np.float64)
        nz = counts > 0
        inv[:-1][nz] = 1.0 / counts[nz]
        self.g = inv[conc]  # (n, k): 1/count(c) per slot, 0 for padding (conc == -1)
        self.nconc = (conc >= 0).sum(axis=1)
        self.max_count = float(counts.max()) if len(counts) else 0.0
        if method == "InverseFrequency":
            self.w = self.g.sum(axis=1) / np.maximum(self.nconc, 1)

    def prob(self, t: float) -> np.ndarray:
        if self.method == "MetaCLIP":
            # p(c) = min(1, t / count(c)); keep iff any concept is drawn: 1 - prod(1 - p(c))
            p = np.minimum(1.0, t * self.g)
            return 1.0 - np.prod(1.0 - p, axis=1)
        # InverseFrequency: min(1, t * mean over the sample's concepts of 1/count(c))
        return np.minimum(1.0, t * self.w)

    def expected(self, t: float) -> float:
        return float(self.prob(t).sum())

    def solve(self, target: int) -> float:
        """Smallest-error t for an expected kept count of `target` (bisection; E(t) is monotone)."""
        lo, hi = 0.0, max(self.max_count, 1.0)
        if self.expected(hi) <= target:
            return hi
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if self.expected(mid) < target:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-9 * hi:
                break
        return hi


# ---------------------------------------------------------------- reading the shards

def _read_shards(output: str, shards: int) -> tuple[list[dict[str, Any]], list[pa.Table], np.ndarray]:
    markers, tabs, total = [], [], None
    for i in range(shards):
        names = shard_names(output, i, shards)
        if not storage.exists(names["marker"]):
            raise JobError(f"output shards: shard {i} of {shards} is not committed under "
                           f"{shard_prefix(output, shards)} (run `retrieve --shard {i} --shards {shards}` first)")
        m = storage.read_json(names["marker"])
        blob = storage.read_bytes(m["files"]["topk"]["uri"])
        cblob = storage.read_bytes(m["files"]["counts"]["uri"])
        if storage.sha256_bytes(blob) != m["files"]["topk"]["digest"] or \
                storage.sha256_bytes(cblob) != m["files"]["counts"]["digest"]:
            raise JobError(f"output shards: shard {i} of {shards} files do not match their digests (re-run that shard)")
        c = np.load(io.BytesIO(cblob))
        total = c.astype(np.int64) if total is None else total + c
        markers.append(m)
        tabs.append(pq.read_table(io.BytesIO(blob)))
    ref = {k: v for k, v in markers[0]["parameters"].items() if k not in SHARD_ONLY}
    pos = 0
    for i, m in enumerate(markers):
        p = {k: v for k, v in m["parameters"].items() if k not in SHARD_ONLY}
        if p != ref:
            diff = sorted(k for k in set(p) | set(ref) if p.get(k) != ref.get(k))
            raise JobError(f"output shards: shard {i} was retrieved with different parameters ({', '.join(diff)})")
        lo, hi = m["parameters"]["rows"]
        if lo != pos:
            raise JobError(f"output shards: shard {i} covers rows [{lo}, {hi}) but {pos} was expected")
        pos = hi
    if pos != markers[0]["totalRows"]:
        raise JobError(f"output shards: shards cover {pos} rows of {markers[0]['totalRows']}")
    return markers, tabs, total


def _dedupe(items: list[dict[str, str]]) -> list[dict[str, str]]:
    return [dict(uri=u, digest=d) for u, d in sorted({(x["uri"], x["digest"]) for x in items})]


# ---------------------------------------------------------------- main

def run_balance(a) -> dict[str, Any]:
    t_start = time.perf_counter()
    if a.method not in METHODS:
        raise JobError(f"balancing method: {a.method!r} is not one of {', '.join(METHODS)}")
    if a.threshold is not None and a.target_samples is not None:
        raise JobError("balancing threshold: give at most one of --threshold and --target-samples")
    if a.threshold is None and a.target_samples is None:
        a.threshold = float(getattr(a, "default_threshold", 20000.0))
    if a.threshold is not None and not (a.threshold > 0 and math.isfinite(a.threshold)):
        raise JobError(f"balancing threshold: {a.threshold} must be a positive number")
    if a.target_samples is not None and a.target_samples < 1:
        raise JobError(f"balancing target-samples: {a.target_samples} must be >= 1")
    if a.shards < 1:
        raise JobError(f"shards: {a.shards} must be >= 1")
    if not a.output:
        raise JobError("output uri: missing")

    markers, tabs, before = _read_shards(a.output, a.shards)
    rp = markers[0]["parameters"]
    for flag, key in (("source", "source"), ("id_field", "idField"), ("embedding_field", "embeddingField"),
                      ("concepts", "concepts")):
        given = getattr(a, flag, None)
        if given is not None and given != rp[key]:
            raise JobError(f"balance {flag.replace('_', '-')}: {given!r} differs from the retrieve shards' {rp[key]!r}")

    # the source must be unchanged since retrieval (same files, sizes, rows)
    src_files = tables.list_parquet(rp["source"], "source")
    if [[f.uri, f.rows, f.size] for f in src_files] != rp["sourceFiles"]:
        raise JobError(f"source uri: {rp['source']} changed since retrieval (files, sizes or row counts differ)")
    schema_names = set(_schema(src_files[0].uri).names)
    keep_cols = [c for c in ("images", "conversations") if c in schema_names]

    table = pa.concat_tables(tabs)
    n = table.num_rows
    hashes = table.column("idHash").to_numpy()
    uniq, first_pos, cnt = np.unique(hashes, return_index=True, return_counts=True)
    if len(uniq) != n:  # a repeated 64-bit hash: check the ids themselves (a true collision is harmless)
        dup_h = set(uniq[cnt > 1].tolist())
        ids_col = table.column("id")
        seen: dict[str, int] = {}
        for j in np.flatnonzero(np.isin(hashes, list(dup_h))):
            sid = ids_col[int(j)].as_py()
            if sid in seen:
                raise JobError(f"source id-field: id {sid!r} appears more than once in {rp['source']}")
            seen[sid] = int(j)
    lists = table.column("concepts").combine_chunks()
    offs = lists.offsets.to_numpy()
    flat = lists.values.to_numpy()
    k = int(rp["topK"])
    conc = np.full((n, k), -1, np.int32)
    lens = np.diff(offs)
    slot = np.arange(len(flat)) - np.repeat(offs[:-1], lens)
    conc[np.repeat(np.arange(n), lens), slot] = flat

    rule = Rule(a.method, conc, before)
    t = float(a.threshold) if a.threshold is not None else rule.solve(int(a.target_samples))
    prob = rule.prob(t)
    u = tables.uniforms(hashes, int(a.seed))
    keep = u < prob
    sel = np.flatnonzero(keep)
    after = np.bincount(conc[sel][conc[sel] >= 0], minlength=len(before)).astype(np.int64)
    log(f"balance: {n} samples, {len(before)} concepts, method {a.method}, t={t:.6g}, "
        f"expected {prob.sum():.1f}, selected {len(sel)}")

    recall_q = sum(m["recall"]["queries"] for m in markers)
    recall_h = sum(m["recall"]["hits"] for m in markers)
    approximate = bool(markers[0]["index"].get("approximate"))
    stats: dict[str, Any] = {
        "inputSamples": int(n),
        "selectedSamples": int(len(sel)),
        "threshold": float(round(t, 6)),
        "keptFraction": float(round(len(sel) / n, 6)) if n else 0.0,
        "expectedSamples": float(round(float(prob.sum()), 3)),
        "samplesWithoutConcepts": int((lens == 0).sum()),
        "before": st.distribution(before),
        "after": st.distribution(after),
    }
    if approximate:
        if recall_q:
            stats["retrievalRecall"] = float(round(recall_h / (recall_q * k), 6))
        stats["recallQueries"] = int(recall_q)

    parameters = {k2: v for k2, v in rp.items() if k2 not in SHARD_ONLY and k2 != "sourceFiles"}
    parameters.update(method=a.method, threshold=a.threshold, targetSamples=a.target_samples, seed=int(a.seed),
                      resolvedThreshold=stats["threshold"], partRows=int(a.part_rows))
    inputs: dict[str, Any] = {
        "source": _dedupe([x for m in markers for x in m["parameters"]["inputs"]["source"]]),
        "concepts": _dedupe(markers[0]["parameters"]["inputs"]["concepts"]),
    }
    if "digest" in markers[0]["index"]:
        inputs["index"] = {"uri": markers[0]["index"]["uri"], "digest": markers[0]["index"]["digest"]}

    prev = _already_done(a.output, parameters, inputs)
    if prev is not None:
        log("balance: manifest with the same parameters and inputs exists and its files verify; skipping")
        return dict(prev, progress={"shardsCompleted": a.shards, "shardsTotal": a.shards})

    # ---- writes (data first, manifest last)
    files: dict[str, str] = {}
    t0 = time.perf_counter()
    nbytes = _write_selected(a.output, src_files, rp["idField"], keep_cols, table, sel, conc, int(a.part_rows), files)
    texts = _concept_texts(rp["concepts"], rp["conceptTextField"], len(before))
    ct = pa.table({"concept": pa.array(np.arange(len(before), dtype=np.int32)), "text": pa.array(texts, pa.string()),
                   "before": pa.array(before), "after": pa.array(after)})
    files["concept-counts.parquet"] = storage.write_bytes_atomic(storage.join(a.output, "concept-counts.parquet"),
                                                                 _parquet_bytes(ct))
    rows = st.kept_by_bucket(before, after)
    files["plots/concept-frequency.png"] = storage.write_bytes_atomic(
        storage.join(a.output, "plots/concept-frequency.png"), st.plot_rank(before, after, t))
    files["plots/kept-by-frequency.png"] = storage.write_bytes_atomic(
        storage.join(a.output, "plots/kept-by-frequency.png"), st.plot_kept(rows))
    files["stats.json"] = storage.write_json_atomic(storage.join(a.output, "stats.json"),
                                                    dict(stats, keptByFrequency=rows))
    manifest = lineage.build_manifest(kind="BalancedCorpus", step="balance", inputs=inputs, parameters=parameters,
                                      files=files, stats=stats)
    out = lineage.commit_manifest(a.output, manifest)
    _remove_stale_parts(a.output, files)
    dt = time.perf_counter() - t_start
    log(f"balance: wrote {len(sel)} selected samples in {len([f for f in files if f.startswith('selected/')])} parts "
        f"({time.perf_counter() - t0:.2f}s); throughput {n / max(dt, 1e-9):.1f} items/s, "
        f"{nbytes / max(dt, 1e-9):.0f} bytes/s written")
    return {"stats": status_stats(stats), "output": out,
            "progress": {"shardsCompleted": a.shards, "shardsTotal": a.shards}}


def _schema(uri: str) -> pa.Schema:
    fs, path = storage.get_fs(uri)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).schema_arrow


def _parquet_bytes(t: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="zstd", row_group_size=256 * 1024)
    return buf.getvalue()


def _concept_texts(uri: str, field: str, n: int) -> list[str]:
    files = tables.list_parquet(uri, "concepts")
    out: list[str] = []
    for f in files:
        fs, path = storage.get_fs(f.uri)
        with fs.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            tables.check_columns(pf.schema_arrow, {"text-field": field}, "concepts", f.uri)
            out.extend("" if x is None else str(x) for x in pf.read(columns=[field]).column(field).to_pylist())
    if len(out) != n:
        raise JobError(f"concepts uri: {uri} now has {len(out)} rows, retrieval saw {n}")
    return out


def _write_selected(output: str, src_files, id_field: str, keep_cols: list[str], table: pa.Table,
                    sel: np.ndarray, conc: np.ndarray, part_rows: int, files: dict[str, str]) -> int:
    """Selected rows in global order, `part_rows` per part file (independent of shard count)."""
    rows = table.column("row").to_numpy()
    sel_rows = rows[sel]
    pending: list[pa.Table] = []
    pending_n, part, nbytes = 0, 0, 0

    def concepts_of(idx: np.ndarray) -> pa.Array:
        c = conc[idx]
        m = c >= 0
        offsets = np.zeros(len(idx) + 1, np.int32)
        np.cumsum(m.sum(axis=1), out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(c[m], pa.int32()))

    def flush(final: bool) -> None:
        nonlocal pending, pending_n, part, nbytes
        while pending_n >= part_rows or (final and pending_n > 0):
            t = pa.concat_tables(pending)
            head, rest = t.slice(0, part_rows), t.slice(part_rows)
            name = f"selected/part-{part:05d}.parquet"
            data = _parquet_bytes(head)
            files[name] = storage.write_bytes_atomic(storage.join(output, name), data)
            nbytes += len(data)
            part += 1
            pending, pending_n = ([rest] if rest.num_rows else []), rest.num_rows

    for f in src_files:
        a, b = np.searchsorted(sel_rows, [f.start, f.start + f.rows])
        if a == b:
            continue
        idx = sel[a:b]  # positions in `table`
        local = sel_rows[a:b] - f.start
        ids = table.column("id").take(pa.array(idx))
        cols: dict[str, Any] = {"id": ids}
        if keep_cols:
            fs, path = storage.get_fs(f.uri)
            with fs.open(path, "rb") as fh:
                src = pq.ParquetFile(fh).read(columns=[id_field] + keep_cols)
            src = src.take(pa.array(local))
            if src.column(id_field).cast(pa.string()).to_pylist() != ids.to_pylist():
                raise JobError(f"source uri: {f.uri} rows changed since retrieval (ids differ)")
            if "images" in keep_cols:
                imgs = src.column("images").to_pylist()
                cols["images"] = pa.array([[tables.absolute_image_uri(f.uri, x) for x in (l or [])] for l in imgs],
                                          pa.list_(pa.string()))
            if "conversations" in keep_cols:
                cols["conversations"] = src.column("conversations").combine_chunks()
        cols["concepts"] = concepts_of(idx)
        pending.append(pa.table(cols))
        pending_n += len(idx)
        flush(False)
    flush(True)
    if part == 0:  # nothing selected: still write an empty part so readers see the schema
        cols = {"id": pa.array([], pa.string())}
        if "images" in keep_cols:
            cols["images"] = pa.array([], pa.list_(pa.string()))
        if "conversations" in keep_cols:
            cols["conversations"] = pa.array([], pa.string())
        cols["concepts"] = pa.array([], pa.list_(pa.int32()))
        data = _parquet_bytes(pa.table(cols))
        files["selected/part-00000.parquet"] = storage.write_bytes_atomic(
            storage.join(output, "selected/part-00000.parquet"), data)
    return nbytes


def _remove_stale_parts(output: str, files: dict[str, str]) -> None:
    fs, path = storage.get_fs(storage.join(output, "selected"))
    try:
        fs.invalidate_cache(path)
        present = fs.ls(path, detail=False)
    except FileNotFoundError:
        return
    for p in present:
        rel = "selected/" + p.rstrip("/").rsplit("/", 1)[-1]
        if rel not in files:
            try:
                fs.rm(p)
            except FileNotFoundError:
                pass


def _already_done(output: str, parameters: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any] | None:
    try:
        m = lineage.read_manifest(output)
    except (ValueError, OSError):
        return None
    if not m or json.loads(json.dumps(m.get("parameters"))) != json.loads(json.dumps(parameters)) or \
            json.loads(json.dumps(m.get("inputs"))) != json.loads(json.dumps(inputs)):
        return None
    for rel, digest in m.get("files", {}).items():
        uri = storage.join(output, rel)
        if not storage.exists(uri) or storage.sha256_uri(uri) != digest:
            return None
    uri = storage.join(output, lineage.MANIFEST)
    return {"stats": status_stats(m["stats"]), "output": {"uri": output.rstrip("/"), "manifest": uri,
                                                          "digest": storage.sha256_uri(uri)}}
