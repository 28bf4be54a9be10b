"""One shard of the selection (an Indexed Job pod): sample N responses per prompt with the current
policy, score each with the rewards, record per-prompt statistics (the rule is applied by `merge`).

Prompt i belongs to shard i mod --shards. Each prompt is sampled with its own seed (from --seed and
its id), so a prompt's samples do not depend on the shard count or on the other prompts.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

from vlmops_contract.layouts import rl as layout
from vlmops_contract.rl_checks import REWARDS, ROLLOUTS, TEMPLATES

from ..common import lineage, storage
from ..common.result import JobError, shard_index
from . import prompts as pr
from ..common.lineage import committed_marker
from .common import fault, log, parse_list, resolve_policy, work_dir
from .rewards import total
from .selection import draw_key, prompt_stats


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, help="the policy's HF export (release format): URI, path or HF repo id")
    p.add_argument("--policy-digest", default=None, help="expected digest (the upstream stage's status.output.digest)")
    p.add_argument("--prompts", required=True, help="prompt table URI (.jsonl or .parquet)")
    p.add_argument("--samples", type=int, default=8, help="N: responses sampled per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-completion-length", type=int, default=256)
    p.add_argument("--max-prompt-length", type=int, default=8192,
                   help="prompts with more tokens (images included) are left out and counted")
    p.add_argument("--template", default="answerOnly", choices=TEMPLATES)
    p.add_argument("--rewards", default="exact_match,numeric,multiple_choice", help=f"of {', '.join(REWARDS)}")
    p.add_argument("--correct-reward", type=float, default=1.0, help="a sample is correct when its reward reaches this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rollout", default="hf", choices=ROLLOUTS)
    p.add_argument("--gpus", type=int, default=0, help="GPUs of the pod (vllm: tensor parallel size)")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--shard", type=int, default=None, help="default: JOB_COMPLETION_INDEX")
    p.add_argument("--work-dir", default=None, help="local scratch (default: $VLMOPS_STAGING_DIR or a temp dir)")
    p.add_argument("--output", required=True)


def parameters(a: argparse.Namespace, rewards: tuple[str, ...]) -> dict[str, Any]:
    """What decides a shard's content (the marker's parameters; merge checks they agree)."""
    return {"samples": a.samples, "temperature": a.temperature, "maxCompletionLength": a.max_completion_length,
            "maxPromptLength": a.max_prompt_length, "template": a.template, "rewards": list(rewards),
            "correctReward": a.correct_reward, "seed": a.seed, "rollout": a.rollout, "shards": a.shards}


def _check(a: argparse.Namespace) -> tuple[str, ...]:
    if a.samples < 1:
        raise JobError(f"selection samples: {a.samples} must be >= 1")
    if not a.temperature > 0:
        raise JobError(f"selection temperature: {a.temperature} must be > 0")
    if a.max_completion_length < 1 or a.max_prompt_length < 1:
        raise JobError("selection maxCompletionLength / maxPromptLength: must be >= 1")
    return parse_list(a.rewards, "selection rewards", REWARDS)


def run(a: argparse.Namespace) -> dict[str, Any]:
    rewards = _check(a)
    shard = shard_index(a.shard, a.shards, "select")
    names = layout.select_shard(shard, a.shards)
    marker_uri = storage.join(a.output, names["marker"])
    table = pr.read(a.prompts)
    mine = [p for i, p in enumerate(table) if i % a.shards == shard]
    if a.rollout == "vllm":
        _require_vllm()
    local, policy = resolve_policy(a.policy, a.policy_digest, work_dir(a.work_dir, f"{a.output}#select-{shard}"))
    prompts_in = {"uri": a.prompts, "digest": lineage.tree_digest(a.prompts)}
    # what decides this shard's content: a marker written with the same key is reused
    key = {**parameters(a, rewards), "shard": shard, "policy": policy.get("identity") or policy["digest"],
           "promptsDigest": prompts_in["digest"]}
    done = committed_marker(marker_uri, key)
    if done is not None:
        log(f"select shard {shard}/{a.shards}: committed with the same parameters and inputs; skipping")
        return {"select": {"shard": shard, "prompts": done["counts"]["prompts"], "reused": True}}
    t0 = time.perf_counter()
    sampler = (VllmSampler if a.rollout == "vllm" else HfSampler)(local, a)
    root = pr.image_root(a.prompts)
    lines, n_samples, n_tokens, too_long = [], 0, 0, 0
    for k, p in enumerate(mine):
        images = pr.load_images(root, p.images)
        got = sampler.sample(p, images, draw_key(p.id, a.seed) % (2 ** 63 - 1))
        if got is None:
            too_long += 1
            lines.append({"id": p.id, "dropped": "promptTooLong"})
            continue
        texts, lengths, prompt_tokens = got
        r = total(rewards, texts, answer=[p.answer] * len(texts), answer_type=[p.answer_type] * len(texts),
                  template=[a.template] * len(texts))
        stats = prompt_stats(r, a.correct_reward)
        lines.append({"id": p.id, "promptTokens": prompt_tokens, "rewards": r, "lengths": lengths, **stats.wire()})
        n_samples += len(texts)
        n_tokens += sum(lengths)
        if k == 0:
            log({"event": "firstPrompt", "id": p.id, "sample": texts[0][:200], "rewards": r})
        fault("select-after-first-prompt")
    dt = max(time.perf_counter() - t0, 1e-9)
    data = "".join(json.dumps(x, sort_keys=True) + "\n" for x in lines).encode()
    digest = storage.write_bytes_atomic(storage.join(a.output, names["prompts"]), data)
    counts = {"prompts": len(mine), "sampled": len(mine) - too_long, "promptTooLong": too_long,
              "samples": n_samples, "completionTokens": n_tokens}
    marker = {"parameters": key, "policy": policy, "promptsInput": prompts_in,
              "imageRoot": root, "files": {"prompts": {"uri": storage.join(a.output, names["prompts"]),
                                                         "digest": digest}},
              "counts": counts, "seconds": round(dt, 3),
              "samplesPerSecond": round(n_samples / dt, 3), "tokensPerSecond": round(n_tokens / dt, 3)}
    storage.write_json_atomic(marker_uri, marker)
    log(f"select shard {shard}/{a.shards}: {len(mine)} prompts, {n_samples} samples in {dt:.1f}s "
        f"({n_samples / dt:.2f} samples/s, {n_tokens / dt:.1f} completion tokens/s)")
    return {"select": {"shard": shard, **counts, "samplesPerSecond": marker["samplesPerSecond"]}}


def _require_vllm() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise JobError("rollout vllm: vllm is not installed in this image (build it with vLLM, or use rollout hf)")
    import torch

    if not torch.cuda.is_available():
        raise JobError("rollout vllm: no GPU visible (vllm generates on GPUs)")


class HfSampler:
    """N responses per prompt with transformers' generate: the prompt repeated N times in one batch."""

    def __init__(self, local: str, a: argparse.Namespace):
        import torch

        from .policy import device, load

        self.a, self.torch = a, torch
        self.model, self.processor = load(local)
        self.device = device()
        self.model.to(self.device).eval()

    def sample(self, p: pr.Prompt, images: list, seed: int) -> tuple[list[str], list[int], int] | None:
        a, torch = self.a, self.torch
        text = self.processor.apply_chat_template(pr.messages(p, a.template), tokenize=False,
                                                  add_generation_prompt=True)
        one = self.processor(text=[text], images=images or None, return_tensors="pt")
        prompt_tokens = int(one["input_ids"].shape[1])
        if prompt_tokens > a.max_prompt_length:
            return None
        batch = self.processor(text=[text] * a.samples, images=[images] * a.samples if images else None,
                               return_tensors="pt").to(self.device)
        tok = self.processor.tokenizer
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(**batch, do_sample=True, temperature=a.temperature, top_p=1.0, top_k=0,
                                      max_new_tokens=a.max_completion_length, pad_token_id=tok.pad_token_id,
                                      eos_token_id=tok.eos_token_id,
                                      suppress_tokens=[self.model.config.image_token_id])
        completion = out[:, batch["input_ids"].shape[1]:]
        lengths = []
        for row in completion.tolist():
            n = len(row)
            if tok.eos_token_id in row:
                n = row.index(tok.eos_token_id) + 1
            lengths.append(n)
        texts = tok.batch_decode(completion, skip_special_tokens=True)
        return texts, lengths, prompt_tokens


class VllmSampler:
    """N responses per prompt from vLLM (one engine over the pod's GPUs, tensor parallel)."""

    def __init__(self, local: str, a: argparse.Namespace):
        from transformers import AutoProcessor
        from vllm import LLM

        self.a = a
        self.processor = AutoProcessor.from_pretrained(local, trust_remote_code=True)
        self.llm = LLM(model=local, trust_remote_code=True, tensor_parallel_size=max(a.gpus, 1), seed=a.seed,
                       max_model_len=a.max_prompt_length + a.max_completion_length)

    def sample(self, p: pr.Prompt, images: list, seed: int) -> tuple[list[str], list[int], int] | None:
        from vllm import SamplingParams

        a = self.a
        text = self.processor.apply_chat_template(pr.messages(p, a.template), tokenize=False,
                                                  add_generation_prompt=True)
        prompt_tokens = int(self.processor(text=[text], images=images or None, return_tensors="pt")
                            ["input_ids"].shape[1])
        if prompt_tokens > a.max_prompt_length:
            return None
        req: dict[str, Any] = {"prompt": text}
        if images:
            req["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        params = SamplingParams(n=a.samples, temperature=a.temperature, max_tokens=a.max_completion_length, seed=seed)
        (out,) = self.llm.generate([req], params, use_tqdm=False)
        return [o.text for o in out.outputs], [len(o.token_ids) for o in out.outputs], prompt_tokens
