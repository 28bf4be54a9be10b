"""Merge the select shards and commit the selection: the discrepancy rule (`selection.py`) over every
prompt's statistics, the `maxPrompts` cap, then the selected prompts, every prompt's statistics
and verdict, the counts, and `selection-manifest.json` last (lineage: the policy and the prompts).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from vlmops_contract.layouts import rl as layout

from ..common import lineage, storage
from ..common.result import JobError
from . import prompts as pr
from ..common.lineage import same_json
from .common import log
from .selection import KEPT, VERDICTS, PromptStats, Rule, select

SHARD_KEYS = ("shard",)  # marker keys that differ between the shards of one run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", type=int, default=1, help="shard count of the select step")
    p.add_argument("--pass-at-n-min", type=float, default=1.0)
    p.add_argument("--pass-at-1-max", type=float, default=1.0)
    p.add_argument("--reward-range", default="0,1", help="lo,hi: the mean reward a kept prompt has")
    p.add_argument("--max-prompts", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seeds the maxPrompts subsample")
    p.add_argument("--output", required=True)


def _rule(a: argparse.Namespace) -> Rule:
    try:
        lo, hi = (float(x) for x in a.reward_range.split(","))
    except ValueError:
        raise JobError(f"selection rewardRange: {a.reward_range!r} is not lo,hi") from None
    if lo > hi:
        raise JobError("spec.selection.rewardRange: [lo, hi] with lo <= hi")
    if a.max_prompts is not None and a.max_prompts < 1:
        raise JobError(f"selection maxPrompts: {a.max_prompts} must be >= 1")
    return Rule(a.pass_at_n_min, a.pass_at_1_max, lo, hi)


def read_shards(output: str, shards: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every select shard's marker and lines; all committed, intact and from one run."""
    markers, lines = [], []
    for i in range(shards):
        names = layout.select_shard(i, shards)
        uri = storage.join(output, names["marker"])
        if not storage.exists(uri):
            raise JobError(f"output select: shard {i} of {shards} is not committed ({uri}); run select for it first")
        m = storage.read_json(uri)
        f = m["files"]["prompts"]
        data = storage.read_bytes(f["uri"])
        if storage.sha256_bytes(data) != f["digest"]:
            raise JobError(f"output select: shard {i} of {shards} does not match its digest (re-run that shard)")
        markers.append(m)
        lines += [json.loads(x) for x in data.decode().splitlines() if x.strip()]
    ref = {k: v for k, v in markers[0]["parameters"].items() if k not in SHARD_KEYS}
    for i, m in enumerate(markers):
        p = {k: v for k, v in m["parameters"].items() if k not in SHARD_KEYS}
        if not same_json(p, ref):
            diff = sorted(k for k in set(p) | set(ref) if p.get(k) != ref.get(k))
            raise JobError(f"output select: shard {i} ran with different parameters or inputs ({', '.join(diff)})")
    return markers, lines


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 6) if xs else None


def summary(lines: list[dict[str, Any]], verdicts: dict[str, str]) -> dict[str, Any]:
    sampled = [x for x in lines if "dropped" not in x]
    kept = [x for x in sampled if verdicts.get(x["id"]) == KEPT]
    counts = {v: 0 for v in VERDICTS}
    for v in verdicts.values():
        counts[v] += 1
    return {"prompts": len(lines), "promptTooLong": len(lines) - len(sampled), "selected": len(kept),
            "verdicts": counts, "passAt1Mean": _mean([x["passAt1"] for x in sampled]),
            "passAtNMean": _mean([x["passAtN"] for x in sampled]),
            "meanReward": _mean([x["meanReward"] for x in sampled]),
            "selectedPassAt1Mean": _mean([x["passAt1"] for x in kept]),
            "samples": sum(x["samples"] for x in sampled)}


def run(a: argparse.Namespace) -> dict[str, Any]:
    rule = _rule(a)
    if a.shards < 1:
        raise JobError(f"shards: {a.shards} must be >= 1")
    markers, lines = read_shards(a.output, a.shards)
    m0 = markers[0]
    params = {**{k: v for k, v in m0["parameters"].items() if k not in SHARD_KEYS + ("shards", "policy",
                                                                                     "promptsDigest")},
              "passAtNMin": rule.pass_at_n_min, "passAt1Max": rule.pass_at_1_max,
              "rewardRange": [rule.reward_lo, rule.reward_hi], "maxPrompts": a.max_prompts, "selectionSeed": a.seed}
    inputs = {"policy": m0["policy"], "prompts": m0["promptsInput"]}
    prev = _already_done(a.output, params, inputs)
    if prev is not None:
        log("merge: the selection is committed with the same parameters and inputs; re-reporting it")
        return prev
    stats = {x["id"]: PromptStats(x["samples"], x["correct"], x["passAt1"], x["passAtN"], x["meanReward"],
                                  x["rewardStd"]) for x in lines if "dropped" not in x}
    verdicts = select(stats, rule, a.max_prompts, a.seed)
    table = {p.id: p for p in pr.read(m0["promptsInput"]["uri"])}
    missing = [x["id"] for x in lines if x["id"] not in table]
    if missing or len(lines) != len(table):
        raise JobError(f"prompts uri: the table changed since the select step ({len(table)} rows now, "
                       f"{len(lines)} sampled{', e.g. ' + missing[0] + ' is gone' if missing else ''})")
    order = [p for p in table]  # the table's order, whatever the shard count
    by_id = {x["id"]: x for x in lines}
    summ = summary(lines, verdicts)
    files: dict[str, str] = {}
    selected = "".join(json.dumps({**table[i].wire(), "stats": {k: by_id[i][k] for k in
                                   ("samples", "correct", "passAt1", "passAtN", "meanReward", "rewardStd", "promptTokens")}},
                                  sort_keys=True) + "\n" for i in order if verdicts.get(i) == KEPT)
    files[layout.SELECTED] = storage.write_bytes_atomic(storage.join(a.output, layout.SELECTED), selected.encode())
    every = "".join(json.dumps({**{k: v for k, v in by_id[i].items() if k not in ("rewards", "lengths")},
                                "rewards": by_id[i].get("rewards"),
                                "verdict": verdicts.get(i, by_id[i].get("dropped"))}, sort_keys=True) + "\n"
                    for i in order)
    files[layout.PROMPT_STATS] = storage.write_bytes_atomic(storage.join(a.output, layout.PROMPT_STATS), every.encode())
    files[layout.SELECTION_STATS] = storage.write_json_atomic(storage.join(a.output, layout.SELECTION_STATS), summ)
    manifest = lineage.build_manifest(kind="VLMRLStage", step="select", inputs=inputs, parameters=params,
                                      files=files, stats=summ,
                                      locations={"imageRoot": m0["imageRoot"], "prompts": m0["promptsInput"]["uri"]})
    out = lineage.commit_manifest(a.output, manifest, name=layout.SELECTION_MANIFEST)
    log(f"merge: {summ['selected']} of {summ['prompts']} prompts selected; verdicts {summ['verdicts']}")
    result = _result(a.output, out, summ, inputs["policy"])
    if not summ["selected"]:
        raise JobError(f"selection: no prompt was kept ({_counts(summ)}); see {storage.join(a.output, layout.PROMPT_STATS)}"
                       " and widen selection.rewardRange / passAt1Max, or check the prompts' answers")
    return result


def _counts(summ: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in summ["verdicts"].items() if v)


def _result(output: str, out: dict[str, str], summ: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    return {"selection": {"uri": storage.join(output, layout.SELECTION_DIR), "manifest": out["manifest"],
                          "digest": out["digest"], "identity": out.get("identity"),
                          "policy": {k: policy[k] for k in ("uri", "digest", "identity") if policy.get(k)},
                          **{k: summ[k] for k in ("prompts", "selected", "passAt1Mean", "passAtNMean",
                                                  "meanReward", "selectedPassAt1Mean")},
                          "verdicts": {k: v for k, v in summ["verdicts"].items() if v}}}


def _already_done(output: str, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any] | None:
    m = lineage.reusable_manifest(output, params, inputs, layout.SELECTION_MANIFEST)
    if m is None or not m["stats"].get("selected"):
        return None
    uri = storage.join(output, layout.SELECTION_MANIFEST)
    out = {"uri": output.rstrip("/"), "manifest": uri, "digest": storage.sha256_uri(uri), "identity": m.get("identity")}
    return _result(output, out, m["stats"], inputs["policy"])
