"""Reduce the retrieve shards: sum the concept counts, solve t, draw, write the selection.

Output (under `--output`, names in `vlmops_contract.layouts.balance`):
  selected/part-<j>.parquet   id, [images (absolute URIs), conversations,] concepts list<int32>
  concept-counts.parquet      concept, text, before, after
  stats.json                  the stats block (also in the manifest and the result line)
  plots/concept-frequency.png, plots/kept-by-frequency.png
  manifest.json               written last (lineage.build_manifest)
Nothing here depends on the shard count: rows are in global source order, the draw is a
seeded hash of the id, and part files hold a fixed number of selected rows.

Re-balancing an output that holds another run first removes its manifest (the output is
uncommitted until the new manifest is written): a run killed midway leaves no manifest, so
readers refuse the output instead of reading old and new files mixed. Readers take the parts the
manifest names (with their digests), never the directory listing; files the manifest does not
name are removed after each commit and by a rerun that finds the output already done.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmops_contract.layouts import MANIFEST
from vlmops_contract.layouts import balance as layout
from vlmops_jobs.common import image_refs, lineage, storage
from vlmops_jobs.common.result import JobError

from . import stats as st
from . import tables
from .sampling import METHODS, Rule
from .selection import SAMPLE_COLUMNS, remove_stale_parts, write_selected
from .shards import SHARD_ONLY, fault, log, read_retrieve_shards

# optional cross-checks: flag (dest) -> the retrieve shards' parameter it must equal
CROSS_CHECKS = (("source", "source"), ("id_field", "idField"), ("embedding_field", "embeddingField"),
                ("concepts", "concepts"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="MetaCLIP", help="MetaCLIP | InverseFrequency")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None)
    g.add_argument("--target-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--default-threshold", type=float, default=20000.0,
                   help="t when neither --threshold nor --target-samples is given (MetaCLIP's t=20k)")
    p.add_argument("--shards", type=int, default=1, help="shard count of the retrieve step")
    p.add_argument("--part-rows", type=int, default=1_000_000, help="selected rows per part file")
    p.add_argument("--output", required=True)
    for flag, _ in CROSS_CHECKS:
        p.add_argument("--" + flag.replace("_", "-"), default=None)


@dataclass
class Draw:
    """The retrieved rows, their concepts, and which were drawn at threshold t."""
    table: pa.Table      # the retrieve shards' rows in global order
    conc: np.ndarray     # (n, k) concept ids, -1 padded
    lens: np.ndarray     # concepts per row
    before: np.ndarray   # per-concept counts over the pool
    after: np.ndarray    # per-concept counts over the selection
    t: float
    prob: np.ndarray     # keep probability per row at t
    sel: np.ndarray      # positions of the selected rows


def run(a: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    _check_args(a)
    markers, tabs, before = read_retrieve_shards(a.output, a.shards)
    rp = markers[0]["parameters"]
    src_files, keep_cols = _check_source(a, rp)
    d = _draw(a, pa.concat_tables(tabs), before, rp)
    stats = _stats(d, markers, int(rp["topK"]))
    parameters, inputs = _lineage(a, markers, stats)
    prev = _already_done(a.output, parameters, inputs)
    if prev is not None:
        log("balance: manifest with the same parameters and inputs exists and its files verify; skipping")
        result, committed = prev
        remove_stale_parts(a.output, committed)
        return dict(result, progress={"shardsCompleted": a.shards, "shardsTotal": a.shards})
    _uncommit(a.output)

    # writes: data first, the manifest last
    files: dict[str, str] = {}
    t0 = time.perf_counter()
    nbytes = write_selected(a.output, src_files, rp["idField"], keep_cols, d.table, d.sel, d.conc,
                            int(a.part_rows), files, image_refs.source_root(rp["source"]))
    fault("balance:after-parts")
    _write_reports(a.output, d, stats, _concept_texts(rp["concepts"], rp["conceptTextField"], len(before)), files)
    manifest = lineage.build_manifest(kind="BalancedCorpus", step="balance", inputs=inputs, parameters=parameters,
                                      files=files, stats=stats, locations=_locations(rp))
    out = lineage.commit_manifest(a.output, manifest)
    remove_stale_parts(a.output, files)
    dt = time.perf_counter() - t_start
    n_parts = len([f for f in files if f.startswith(layout.SELECTED + "/")])
    log(f"balance: wrote {len(d.sel)} selected samples in {n_parts} parts "
        f"({time.perf_counter() - t0:.2f}s); throughput {d.table.num_rows / max(dt, 1e-9):.1f} items/s, "
        f"{nbytes / max(dt, 1e-9):.0f} bytes/s written")
    return {"stats": st.status_stats(stats), "output": out,
            "progress": {"shardsCompleted": a.shards, "shardsTotal": a.shards}}


def _check_args(a: argparse.Namespace) -> None:
    """Flag checks argparse cannot do; neither t given: `--default-threshold`."""
    if a.part_rows < 1:
        raise JobError(f"balance part-rows: {a.part_rows} must be >= 1")
    if a.method not in METHODS:
        raise JobError(f"balancing method: {a.method!r} is not one of {', '.join(METHODS)}")
    if a.threshold is not None and a.target_samples is not None:
        raise JobError("balancing threshold: give at most one of --threshold and --target-samples")
    if a.threshold is None and a.target_samples is None:
        a.threshold = float(a.default_threshold)
    if a.threshold is not None and not (a.threshold > 0 and math.isfinite(a.threshold)):
        raise JobError(f"balancing threshold: {a.threshold} must be a positive number")
    if a.target_samples is not None and a.target_samples < 1:
        raise JobError(f"balancing target-samples: {a.target_samples} must be >= 1")
    if a.shards < 1:
        raise JobError(f"shards: {a.shards} must be >= 1")
    if not a.output:
        raise JobError("output uri: missing")


def _check_source(a: argparse.Namespace, rp: dict[str, Any]) -> tuple[list[tables.SourceFile], list[str]]:
    """The cross-check flags agree with the retrieve shards, and the source is unchanged since
    retrieval (same files, sizes, rows); returns its files and the sample columns it has."""
    for flag, key in CROSS_CHECKS:
        given = getattr(a, flag)
        if given is not None and given != rp[key]:
            raise JobError(f"balance {flag.replace('_', '-')}: {given!r} differs from the retrieve shards' {rp[key]!r}")
    src_files = tables.list_parquet(rp["source"], "source")
    if [[f.uri, f.rows, f.size] for f in src_files] != rp["sourceFiles"]:
        raise JobError(f"source uri: {rp['source']} changed since retrieval (files, sizes or row counts differ)")
    schema_names = set(_schema(src_files[0].uri).names)
    return src_files, [c for c in SAMPLE_COLUMNS if c in schema_names]


def _schema(uri: str) -> pa.Schema:
    fs, path = storage.get_fs(uri)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).schema_arrow


def _check_unique_ids(table: pa.Table, hashes: np.ndarray, source: str) -> None:
    uniq, cnt = np.unique(hashes, return_counts=True)
    if len(uniq) == table.num_rows:
        return
    # a repeated 64-bit hash: check the ids themselves (a true collision is harmless)
    ids_col = table.column("id")
    seen: set[str] = set()
    for j in np.flatnonzero(np.isin(hashes, uniq[cnt > 1])):
        sid = ids_col[int(j)].as_py()
        if sid in seen:
            raise JobError(f"source id-field: id {sid!r} appears more than once in {source}")
        seen.add(sid)


def _concept_matrix(table: pa.Table, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) concept ids per row (-1 padded, rank order kept) and the number per row."""
    lists = table.column("concepts").combine_chunks()
    offs = lists.offsets.to_numpy()
    flat = lists.values.to_numpy()
    n = table.num_rows
    conc = np.full((n, k), -1, np.int32)
    lens = np.diff(offs)
    slot = np.arange(len(flat)) - np.repeat(offs[:-1], lens)
    conc[np.repeat(np.arange(n), lens), slot] = flat
    return conc, lens


def _draw(a: argparse.Namespace, table: pa.Table, before: np.ndarray, rp: dict[str, Any]) -> Draw:
    hashes = table.column("idHash").to_numpy()
    _check_unique_ids(table, hashes, rp["source"])
    conc, lens = _concept_matrix(table, int(rp["topK"]))
    rule = Rule(a.method, conc, before)
    if a.target_samples is not None:
        _check_target(int(a.target_samples), table.num_rows, int((lens > 0).sum()))
    t = float(a.threshold) if a.threshold is not None else rule.solve(int(a.target_samples))
    prob = rule.prob(t)
    sel = np.flatnonzero(tables.uniforms(hashes, int(a.seed)) < prob)
    after = np.bincount(conc[sel][conc[sel] >= 0], minlength=len(before)).astype(np.int64)
    log(f"balance: {table.num_rows} samples, {len(before)} concepts, method {a.method}, t={t:.6g}, "
        f"expected {prob.sum():.1f}, selected {len(sel)}")
    return Draw(table, conc, lens, before, after, t, prob, sel)


def _check_target(target: int, n: int, keepable: int) -> None:
    """A target above what any t can keep (every sample with a concept; samples without one are
    never kept) is refused rather than met by keeping everything."""
    if target > keepable:
        raise JobError(f"balancing targetSamples: {target} is more than the {keepable} samples that can be kept "
                       f"({n} input samples, {n - keepable} without a concept); lower it to at most {keepable}")


def _uncommit(output: str) -> None:
    """Remove another run's manifest before writing over its files (see the module docstring)."""
    uri = storage.join(output, MANIFEST)
    if storage.exists(uri):
        log("balance: the output holds another run; removing its manifest until this one commits")
        fs, path = storage.get_fs(uri)
        fs.rm(path)


def _stats(d: Draw, markers: list[dict[str, Any]], k: int) -> dict[str, Any]:
    n = d.table.num_rows
    stats: dict[str, Any] = {
        "inputSamples": int(n),
        "selectedSamples": int(len(d.sel)),
        "threshold": float(round(d.t, 6)),
        "keptFraction": float(round(len(d.sel) / n, 6)) if n else 0.0,
        "expectedSamples": float(round(float(d.prob.sum()), 3)),
        "samplesWithoutConcepts": int((d.lens == 0).sum()),
        "before": st.distribution(d.before),
        "after": st.distribution(d.after),
    }
    if markers[0]["index"].get("approximate"):
        recall_q = sum(m["recall"]["queries"] for m in markers)
        recall_h = sum(m["recall"]["hits"] for m in markers)
        if recall_q:
            stats["retrievalRecall"] = float(round(recall_h / (recall_q * k), 6))
        stats["recallQueries"] = int(recall_q)
    return stats


def _lineage(a: argparse.Namespace, markers: list[dict[str, Any]], stats: dict[str, Any]) -> tuple[dict, dict]:
    """The manifest's parameters (no shard count: any shard count gives the same manifest) and inputs."""
    rp = markers[0]["parameters"]
    parameters = {k: v for k, v in rp.items() if k not in SHARD_ONLY and k not in ("sourceFiles", "source", "concepts")}
    parameters.update(method=a.method, threshold=a.threshold, targetSamples=a.target_samples, seed=int(a.seed),
                      resolvedThreshold=stats["threshold"], partRows=int(a.part_rows))
    inputs: dict[str, Any] = {
        "source": _dedupe([x for m in markers for x in m["parameters"]["inputs"]["source"]]),
        "concepts": _dedupe(rp["inputs"]["concepts"]),
    }
    index = markers[0]["index"]
    if "digest" in index:
        inputs["index"] = {"uri": index["uri"], "digest": index["digest"]}
    return parameters, inputs


def _locations(rp: dict[str, Any]) -> dict[str, str]:
    """Where the inputs were read (outside identity); image references in the selection are
    relative to `imageRoot`."""
    return {"source": rp["source"], "concepts": rp["concepts"], "imageRoot": image_refs.source_root(rp["source"])}


def _dedupe(items: list[dict[str, str]]) -> list[dict[str, str]]:
    return [dict(uri=u, digest=d) for u, d in sorted({(x["uri"], x["digest"]) for x in items})]


def _already_done(output: str, parameters: dict[str, Any], inputs: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The result of an earlier run with the same parameters and inputs whose files all verify,
    and those files."""
    m = lineage.reusable_manifest(output, parameters, inputs)
    if m is None:
        return None
    uri = storage.join(output, MANIFEST)
    return {"stats": st.status_stats(m["stats"]), "output": {"uri": output.rstrip("/"), "manifest": uri,
                                                             "digest": storage.sha256_uri(uri),
                                                             "identity": m.get("identity")}}, m["files"]


def _concept_texts(uri: str, field: str, n: int) -> list[str]:
    """The vocabulary's texts, for concept-counts.parquet (the concepts must not have changed size)."""
    out: list[str] = []
    for f in tables.list_parquet(uri, "concepts"):
        fs, path = storage.get_fs(f.uri)
        with fs.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            tables.check_columns(pf.schema_arrow, {"text-field": field}, "concepts", f.uri)
            out.extend("" if x is None else str(x) for x in pf.read(columns=[field]).column(field).to_pylist())
    if len(out) != n:
        raise JobError(f"concepts uri: {uri} now has {len(out)} rows, retrieval saw {n}")
    return out


def _write_reports(output: str, d: Draw, stats: dict[str, Any], texts: list[str], files: dict[str, str]) -> None:
    """concept-counts.parquet, the two plots and stats.json (digests added to `files`)."""
    def put(name: str, data: bytes) -> None:
        files[name] = storage.write_bytes_atomic(storage.join(output, name), data)

    ct = pa.table({"concept": pa.array(np.arange(len(d.before), dtype=np.int32)), "text": pa.array(texts, pa.string()),
                   "before": pa.array(d.before), "after": pa.array(d.after)})
    put(layout.CONCEPT_COUNTS, tables.parquet_bytes(ct, 256 * 1024))
    rows = st.kept_by_bucket(d.before, d.after)
    put(layout.PLOT_CONCEPT_FREQUENCY, st.plot_rank(d.before, d.after, d.t))
    put(layout.PLOT_KEPT_BY_FREQUENCY, st.plot_kept(rows))
    files[layout.STATS] = storage.write_json_atomic(storage.join(output, layout.STATS),
                                                    dict(stats, keptByFrequency=rows))
