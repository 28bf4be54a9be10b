"""One phase of GRPO with TRL's GRPOTrainer: the dataset (the selected prompts under the phase's
template, images read when a batch needs them), the config from the phase, the trainer.

GRPO (as TRL implements it): per prompt, `groupSize` completions sampled from the policy; each
completion's advantage is its reward minus the group's mean, divided by the group's std; the loss
is the clipped policy-gradient surrogate on those advantages plus `klCoef` x KL(policy || the
phase's starting policy). Rollouts: transformers' generate (`rollout: hf`), or vLLM in the same
process (`rollout: vllm`, TRL's colocate mode, GPUs only).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from . import prompts as pr
from . import rewards
from .phases import Phase
from .templates import user_text


@dataclass
class PhaseData:
    rows: list[dict[str, Any]]
    dropped: int  # prompts over the phase's maxPromptLength (counted, never silent)


def phase_rows(selected: list[dict[str, Any]], phase: Phase, selection_template: str, tokenizer) -> PhaseData:
    """The selected prompts that fit `phase.maxPromptLength` under its template. The selection
    measured each prompt's tokens (images included) with its own template; the phase's template
    changes only the text, whose token count difference is measured here."""
    rows, dropped = [], 0
    for d in selected:
        p = pr.Prompt.from_wire(d)
        tokens = int(d["stats"]["promptTokens"])
        if phase.template != selection_template:
            def count(t: str) -> int:
                return len(tokenizer(user_text(p.prompt, t), add_special_tokens=False)["input_ids"])
            tokens += count(phase.template) - count(selection_template)
        if tokens > phase.max_prompt_length:
            dropped += 1
            continue
        rows.append({"id": p.id, "prompt": p.prompt, "image_refs": list(p.images), "answer": p.answer,
                     "answer_type": p.answer_type, "template": phase.template})
    return PhaseData(rows, dropped)


def dataset(rows: list[dict[str, Any]], image_root: str):
    """A datasets.Dataset whose items are GRPOTrainer's conversational prompts with their images
    (decoded when the item is read, so the table never holds them all)."""
    from datasets import Dataset

    def to_items(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"prompt": [], "images": []}
        for i, text in enumerate(batch["prompt"]):
            p = pr.Prompt(batch["id"][i], text, batch["answer"][i], batch["answer_type"][i],
                          tuple(batch["image_refs"][i]))
            out["prompt"].append(pr.messages(p, batch["template"][i]))
            out["images"].append(pr.load_images(image_root, p.images))
        return {**out, **{k: batch[k] for k in ("id", "answer", "answer_type", "template")}}

    return Dataset.from_list(rows).with_transform(to_items)


def config(phase: Phase, out_dir: str, seed: int, rollout: str, save_steps: int, keep: int):
    import torch
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    procs = int(os.environ.get("WORLD_SIZE", "1"))
    return GRPOConfig(
        output_dir=out_dir, seed=seed, max_steps=phase.steps, learning_rate=phase.lr, lr_scheduler_type="constant",
        per_device_train_batch_size=phase.prompts_per_step * phase.group_size // procs,
        gradient_accumulation_steps=1, num_generations=phase.group_size, beta=phase.kl_coef,
        max_completion_length=phase.max_completion_length, temperature=phase.temperature,
        logging_steps=1, save_strategy="steps" if save_steps < phase.steps else "no",
        save_steps=max(save_steps, 1), save_total_limit=keep, report_to=[], disable_tqdm=True,
        use_cpu=not cuda, bf16=cuda, gradient_checkpointing=False, remove_unused_columns=False,
        dataloader_num_workers=0, trust_remote_code=True,
        use_vllm=rollout == "vllm", vllm_mode="colocate",
    )


def trainer(model, processor, data, phase: Phase, args, callbacks: list) -> Any:
    """GRPOTrainer for the phase; policy and reference (the phase's start) both get TRL's backbone view."""
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from .policy import for_grpo

    t = GRPOTrainer(model=for_grpo(model), reward_funcs=rewards.by_name(phase.rewards), args=args,
                    train_dataset=data, processing_class=processor, callbacks=callbacks)
    t.remove_callback(PrinterCallback)  # the job logs one JSON line per step itself (progress.py)
    if t.ref_model is not None:  # TRL loads it from the policy's directory: the same class, the same view
        for_grpo(t.ref_model)
    return t
