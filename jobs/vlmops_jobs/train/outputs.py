"""The stage's `--output` (names from `vlmops_contract.layouts.train`): the HF export, the last
progress.json, the lineage manifest (last: the commit marker), and the result line's content."""
from __future__ import annotations

from typing import Any

from vlmops_contract.layouts.train import HF_EXPORT

from ..common import lineage, storage
from .start import Plan
from .training import Outcome


def save_and_export(plan: Plan, model, outcome: Outcome) -> dict[str, Any] | None:
    """Every rank takes part in the HF export (it gathers TP shards); rank 0 then writes progress and
    the manifest and returns the result (None on the other ranks)."""
    hf_uri, hf_files = export_hf(plan, model)
    if plan.rank != 0:
        return None
    if outcome.progress:
        outcome.progress.write()
    return result(plan, outcome, commit_manifest(plan, outcome, hf_files), hf_uri)


def export_hf(plan: Plan, model) -> tuple[str | None, dict[str, Any]]:
    """(export URI, its files' digests keyed by their path under `--output`), or (None, {})."""
    args = plan.args
    if not (args.output and args.hf_export != "off"):
        return None, {}
    from .release_format import export

    uri = storage.join(args.output, HF_EXPORT)
    files = export(model, plan.preset, plan.vocab, plan.tok.image, plan.tok.dir, uri)
    return uri, {f"{HF_EXPORT}/{k}": v for k, v in (files or {}).items()}


# flags that say where (inputs are recorded by content digest; these stay outside identity)
LOCATION_FLAGS = ("data", "tokenizer", "output", "checkpoint-uri", "init-from", "init-from-identity")
# flags that change nothing in the output (the local runner picks a free metrics port per run)
OPERATIONAL_FLAGS = ("metrics-port", "progress-interval", "peak-tflops", "checkpoint-interval", "checkpoint-keep")


def commit_manifest(plan: Plan, outcome: Outcome, hf_files: dict[str, Any]) -> dict[str, str] | None:
    """The lineage manifest, written last; None without `--output`."""
    args = plan.args
    if not args.output:
        return None
    flags = {k.replace("_", "-"): v for k, v in sorted(vars(args).items())}
    locations = {k: flags.pop(k) for k in LOCATION_FLAGS}
    operational = {k: flags.pop(k) for k in OPERATIONAL_FLAGS}
    params = {**flags, "attention-resolved": plan.attention}  # the backend changes the numerics
    inputs = {"data": plan.shards.digest_inputs(),
              "tokenizer": {"uri": args.tokenizer, "digest": lineage.tree_digest(plan.tok.dir)}}
    if plan.start.init_from:
        inputs["initFrom"] = {"uri": plan.start.init_from,
                              "digest": args.init_from_identity or lineage.tree_digest(plan.start.init_from)}
    if plan.start.init_from_hf:
        inputs["initFrom"] = {"uri": args.init_from, "digest": plan.start.init_from_hf_digest}
    # progress.json changes while running: not part of the committed digest set
    man = lineage.build_manifest(kind="VLMTrainingStage", step="train", inputs=inputs, parameters=params,
                                 files=dict(hf_files),
                                 stats={"finalLoss": round(outcome.loss, 6), "steps": args.train_iters},
                                 locations={**locations, "checkpoint": outcome.checkpoint}, operational=operational)
    return lineage.commit_manifest(args.output, man)


def result(plan: Plan, outcome: Outcome, output: dict[str, str] | None, hf_uri: str | None) -> dict[str, Any]:
    total = plan.args.train_iters
    st = outcome.progress.state if outcome.progress else {}
    return {
        "progress": {"step": st.get("step", total), "totalSteps": total,
                     "tokensPerSecond": st.get("tokensPerSecond"), "samplesPerSecond": st.get("samplesPerSecond"),
                     "mfu": st.get("mfu"), "loss": round(outcome.loss, 6), "droppedSamples": outcome.dropped},
        "checkpoint": outcome.checkpoint,
        "output": output,
        "hf": hf_uri,
    }
