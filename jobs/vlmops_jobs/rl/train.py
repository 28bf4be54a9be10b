"""GRPO on the committed selection, phase after phase (TRL's GRPOTrainer), then the final policy
in the release's HF format under `<output>/hf` and the stage's manifest last.

Each phase starts from the previous phase's final weights (the first from `--policy`) and keeps
its own trainer checkpoints; a restarted job skips finished phases and resumes the current one
from its latest checkpoint (weights, optimizer, scheduler, RNG, step: the trainer's own resume).
On a GPU node run it under torchrun (one process per GPU; TRL/accelerate use them data-parallel).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from typing import Any

from vlmops_contract.layouts import rl as layout
from vlmops_contract.rl_checks import ROLLOUTS

from ..common import lineage, storage
from ..common.result import JobError
from . import checkpoints as ck
from .common import fault, log, resolve_policy, work_dir
from .phases import Phase, parse
from .progress import Progress, callback, curve_points

LOCATION_FLAGS = ("policy", "output", "checkpoint_uri", "work_dir")
OPERATIONAL_FLAGS = ("checkpoint_interval", "checkpoint_keep", "progress_interval", "gpus")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, help="the starting policy's HF export (the select step's)")
    p.add_argument("--policy-digest", default=None)
    p.add_argument("--phases", required=True, help="spec.rl.phases as JSON")
    p.add_argument("--rollout", default="hf", choices=ROLLOUTS)
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--checkpoint-uri", required=True)
    p.add_argument("--checkpoint-interval", type=int, default=100, help="steps between trainer checkpoints")
    p.add_argument("--checkpoint-keep", type=int, default=2)
    p.add_argument("--progress-interval", type=int, default=1, help="steps between progress.json writes")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--output", required=True, help="the stage's output (holds the committed selection)")


def read_selection(output: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    man = lineage.read_manifest(output, layout.SELECTION_MANIFEST)
    if man is None:
        raise JobError(f"output selection: {storage.join(output, layout.SELECTION_MANIFEST)} is not committed "
                       "(run select and merge first)")
    data = storage.read_bytes(storage.join(output, layout.SELECTED))
    if storage.sha256_bytes(data) != man["files"][layout.SELECTED]:
        raise JobError(f"output selection: {layout.SELECTED} does not match its manifest")
    rows = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
    if not rows:
        raise JobError("output selection: no prompt was selected")
    return man, rows


def _policy(a: argparse.Namespace, work: str, state) -> tuple[str, dict[str, Any]]:
    """The starting policy as a local directory (copied once per node: the other ranks wait and reuse it)."""
    shared = os.path.join(work, "policy.json")
    with state.local_main_process_first():
        if state.is_local_main_process:
            local, policy = resolve_policy(a.policy, a.policy_digest, work)
            storage.write_json_atomic(shared, {"local": local, "policy": policy})
        doc = storage.read_json(shared)
    return doc["local"], doc["policy"]


def run(a: argparse.Namespace) -> dict[str, Any] | None:
    phases = parse(a.phases, a.gpus, a.rollout)
    if a.checkpoint_interval < 1 or a.checkpoint_keep < 1:
        raise JobError("checkpoint intervalSteps / keep: must be >= 1")
    sel_man, selected = read_selection(a.output)
    from accelerate import PartialState

    state = PartialState()  # the torchrun group (one process per GPU), or this process alone
    work = work_dir(a.work_dir, a.output)
    policy_dir, policy = _policy(a, work, state)
    sel_policy = sel_man["inputs"]["policy"]
    if (policy.get("identity") or policy["digest"]) != (sel_policy.get("identity") or sel_policy["digest"]):
        raise JobError(f"policy: {a.policy} is not the policy the selection sampled ({sel_policy.get('uri')})")
    inputs = {"policy": policy, "prompts": sel_man["inputs"]["prompts"],
              "selection": {"uri": storage.join(a.output, layout.SELECTION_DIR),
                            "digest": lineage.tree_digest(storage.join(a.output, layout.SELECTION_DIR))}}
    params = {"phases": [p.wire() for p in phases], "rollout": a.rollout, "seed": a.seed,
              "selection": sel_man.get("identity")}
    prev = _already_done(a.output, params, inputs)
    if prev is not None:
        log("train: the stage's output is committed with the same parameters and inputs; re-reporting it")
        return prev if state.is_main_process else None
    total = sum(p.steps for p in phases)
    progress = Progress(a.output, total, every=a.progress_interval) if state.is_main_process else None
    start_dir, offset, dropped = policy_dir, 0, {}
    skipped: str | None = None  # a finished phase whose final weights are not local yet (fetched when needed)
    for p in phases:
        done = ck.finished(a.checkpoint_uri, p.name)
        final = os.path.join(work, "final", p.name)
        if done is None:
            if skipped:
                start_dir = _fetch_final(a, skipped, work, state)
                skipped = None
            _run_phase(a, p, start_dir, final, offset, sel_man, selected, progress, work, state)
            done = ck.finished(a.checkpoint_uri, p.name) or {}
            start_dir = final
        else:
            log(f"phase {p.name}: finished earlier (step {offset + p.steps}); skipping")
            if progress is not None:
                progress.curve = [x for x in progress.curve if x["step"] <= offset] + done.get("curve", [])
            skipped = p.name
        dropped[p.name] = done.get("droppedPrompts", 0)
        offset += p.steps
    if skipped:
        start_dir = _fetch_final(a, skipped, work, state)
    if progress is None:
        return None  # the main process reports
    return _commit(a, phases, params, inputs, start_dir, progress, dropped)


def _fetch_final(a: argparse.Namespace, phase: str, work: str, state) -> str:
    """A finished phase's final weights on local disk (once per node)."""
    final = os.path.join(work, "final", phase)
    with state.local_main_process_first():
        if state.is_local_main_process:
            ck.download_dir(ck.final_uri(a.checkpoint_uri, phase), final)
    return final


def _run_phase(a: argparse.Namespace, phase: Phase, start_dir: str, final: str, offset: int,
               sel_man: dict[str, Any], selected: list[dict[str, Any]], progress: Progress | None, work: str,
               state) -> None:
    from . import grpo
    from .policy import load, write_release

    local = os.path.join(work, "phases", phase.name)
    args = grpo.config(phase, local, a.seed, a.rollout, a.checkpoint_interval, a.checkpoint_keep)
    latest = ck.latest(a.checkpoint_uri, phase.name)
    resume = os.path.join(local, latest["checkpoint"]) if latest else None
    with state.local_main_process_first():
        if state.is_local_main_process:
            shutil.rmtree(local, ignore_errors=True)  # a killed attempt's local files are never reused
            if resume:
                ck.download_dir(storage.join(ck.phase_uri(a.checkpoint_uri, phase.name), latest["checkpoint"]), resume)
    if latest:
        log({"event": "resumed", "phase": phase.name, "step": offset + latest["step"], "checkpoint": latest["checkpoint"]})
        if progress is not None:
            with open(os.path.join(resume, "trainer_state.json")) as f:
                progress.restore(phase.name, offset, json.load(f).get("log_history") or [])
    model, processor = load(start_dir)
    data = grpo.phase_rows(selected, phase, sel_man["parameters"]["template"], processor.tokenizer)
    if not data.rows:
        raise JobError(f"spec.rl.phases.{phase.name}.maxPromptLength: every selected prompt is longer "
                       f"({data.dropped} prompts)")
    if data.dropped:
        log(f"phase {phase.name}: {data.dropped} selected prompts exceed maxPromptLength {phase.max_prompt_length}; "
            "left out")

    def on_save(st) -> None:
        if progress is None or st.global_step >= phase.steps:
            return  # the phase's final weights are committed right after its last step
        src = os.path.join(local, layout.checkpoint_name(st.global_step))
        uri = ck.save(a.checkpoint_uri, phase.name, src, st.global_step, a.checkpoint_keep)
        progress.checkpoint = {"latest": uri, "step": offset + st.global_step}
        progress.write()
        fault(f"after-checkpoint-{offset + st.global_step}")

    trainer = grpo.trainer(model, processor, grpo.dataset(data.rows, sel_man["locations"]["imageRoot"]), phase,
                           args, [callback(progress, phase.name, offset, on_save)])
    log({"event": "phase", "phase": phase.name, "steps": phase.steps, "prompts": len(data.rows),
         "droppedPrompts": data.dropped, "resumeFrom": resume})
    trainer.train(resume_from_checkpoint=resume)
    if state.is_main_process:
        write_release(trainer.accelerator.unwrap_model(trainer.model), start_dir, final)
        curve = [x for x in (progress.curve if progress else []) if offset < x["step"] <= offset + phase.steps]
        ck.commit_final(a.checkpoint_uri, phase.name, final, {"phase": phase.name, "steps": phase.steps,
                                                              "droppedPrompts": data.dropped, "curve": curve})
    state.wait_for_everyone()  # the next phase starts from `final` on every rank (one pod: one filesystem)


def _commit(a: argparse.Namespace, phases: list[Phase], params: dict[str, Any], inputs: dict[str, Any],
            final_dir: str, progress: Progress, dropped: dict[str, int]) -> dict[str, Any]:
    hf_uri = storage.join(a.output, layout.HF_EXPORT)
    hf = ck.upload_dir(final_dir, hf_uri, skip=(layout.PHASE_DONE,))
    curve = progress.curve
    last = curve[-1] if curve else {}
    stats = {"steps": sum(p.steps for p in phases), "droppedPrompts": dropped,
             "finalReward": last.get("reward"), "firstReward": curve[0].get("reward") if curve else None}
    flags = {k: v for k, v in vars(a).items()}
    man = lineage.build_manifest(kind="VLMRLStage", step="train", inputs=inputs, parameters=params,
                                 files={f"{layout.HF_EXPORT}/{k}": v for k, v in hf.items()}, stats=stats,
                                 locations={k: flags[k] for k in LOCATION_FLAGS},
                                 operational={k: flags[k] for k in OPERATIONAL_FLAGS})
    out = lineage.commit_manifest(a.output, man)
    last_phase = phases[-1].name
    ckpt = {"latest": ck.final_uri(a.checkpoint_uri, last_phase), "step": stats["steps"]}
    progress.checkpoint = ckpt
    progress.write()
    log(f"train: committed {out['manifest']} (hf export {hf_uri})")
    return result(progress.state, stats["steps"], curve, ckpt, out, hf_uri, sum(dropped.values()))


def result(state: dict[str, Any], total: int, curve: list[dict[str, Any]], ckpt: dict[str, Any],
           out: dict[str, Any], hf_uri: str, dropped: int) -> dict[str, Any]:
    prog = {k: state.get(k) for k in ("step", "phase", "rewardMean", "rewardStd", "kl", "completionLength",
                                      "tokensPerSecond", "loss") if state.get(k) is not None}
    return {"progress": {**prog, "step": total, "totalSteps": total, "droppedPrompts": dropped},
            "checkpoint": ckpt, "output": out, "hf": hf_uri, "curve": curve_points(curve)}


def _already_done(output: str, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any] | None:
    m = lineage.reusable_manifest(output, params, inputs)
    if m is None:
        return None
    doc = storage.read_json(storage.join(output, layout.PROGRESS)) if storage.exists(
        storage.join(output, layout.PROGRESS)) else {}
    uri = storage.join(output, layout.MANIFEST)
    out = {"uri": output.rstrip("/"), "manifest": uri, "digest": storage.sha256_uri(uri), "identity": m.get("identity")}
    return result(doc, m["stats"]["steps"], doc.get("curve") or [], doc.get("checkpoint") or {}, out,
                  storage.join(output, layout.HF_EXPORT), sum((m["stats"].get("droppedPrompts") or {}).values()))
