"""A tiny policy in the release's HF format (random weights, no megatron) and a prompt table whose
answer is one token that policy already says sometimes: a task where GRPO's reward can rise."""
from __future__ import annotations

import json
import os
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "white": (250, 250, 250)}
QUESTION = "<image>\nWhat colour is the image?\nAnswer with one word."


def tiny_policy(out: Path, seed: int = 0, head_scale: float = 1.0) -> Path:
    """The tiny preset (vision 2x32, LLM 2x64) as lmms-eval and the RL job load it: config with
    auto_map + modeling code, the Qwen2.5-VL processor around the synthetic tokenizer, weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from vlmops_contract.model_shapes import PRESETS, padded_vocab
    from vlmops_jobs.common.synthetic import make_tokenizer
    from vlmops_jobs.train import release_format as rf

    out.mkdir(parents=True, exist_ok=True)
    tok_dir = make_tokenizer(str(out.parent / f"{out.name}-tokenizer"))
    tok = AutoTokenizer.from_pretrained(tok_dir)
    preset = PRESETS["tiny"]
    extra = rf.save_processor(str(out), tok_dir, preset)
    cfg = rf.hf_config(preset, padded_vocab(len(tok)), tok.convert_tokens_to_ids("<image>"), extra)
    rf.write_config_and_code(str(out), cfg)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out, trust_remote_code=True),
                                             trust_remote_code=True)
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
    rf.write_release(str(out), {k: v.contiguous() for k, v in model.state_dict().items()}, cfg)
    return out


def colour_prompts(out: Path, n: int, answer: str | None = None, answer_type: str = "exact",
                   colours: tuple[str, ...] = tuple(COLOURS), sizes: tuple[int, ...] = (56, 84, 112)) -> Path:
    """`n` prompts (solid-colour PNGs of `colours` and widths `sizes` in turn, the quickstart's
    question); the answer is the colour's name, or `answer` for every row."""
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = colours[i % len(colours)]
        Image.new("RGB", (sizes[i % len(sizes)], 56), COLOURS[name]).save(out / "images" / f"p{i}.png")
        rows.append({"id": f"p{i}", "prompt": QUESTION, "image": f"images/p{i}.png",
                     "answer": answer if answer is not None else name, "answerType": answer_type})
    path = out / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def first_token_distribution(policy: Path, prompts: Path):
    """The policy's mean next-token distribution after the chat prompt (over the table's prompts)."""
    import torch

    from vlmops_jobs.rl import prompts as pr
    from vlmops_jobs.rl.policy import load

    model, proc = load(str(policy))
    model.eval()
    table = pr.read(str(prompts))
    probs = 0
    for p in table:
        text = proc.apply_chat_template(pr.messages(p, "answerOnly"), tokenize=False, add_generation_prompt=True)
        inp = proc(text=[text], images=pr.load_images(str(prompts.parent), p.images), return_tensors="pt")
        with torch.no_grad():
            probs = probs + model(**inp).logits[0, -1].softmax(-1)
    return probs / len(table), proc.tokenizer


def answer_token(policy: Path, prompts: Path, lo: float = 0.1, hi: float = 0.5) -> tuple[str, float]:
    """A one-token answer the policy gives with probability in [lo, hi] (the most likely such token
    whose text is a plain word): (its text, its probability)."""
    probs, tok = first_token_distribution(policy, prompts)
    special = set(tok.all_special_ids)
    for t in probs.argsort(descending=True).tolist()[:50]:
        text = tok.decode([t]).strip()
        if t not in special and text.isalpha() and lo <= float(probs[t]) <= hi:
            return text, float(probs[t])
    raise AssertionError(f"no token with probability in [{lo}, {hi}] (top {float(probs.max()):.3f}); "
                         "adjust the head scale")


def env() -> dict[str, str]:
    repo = Path(__file__).resolve().parents[3]
    return {**os.environ, "PYTHONPATH": f"{repo}/operator:{repo}/jobs", "OMP_NUM_THREADS": "1"}
