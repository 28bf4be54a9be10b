"""The policy as transformers loads it: the release-format export (remote code + Qwen2.5-VL
processor), a view TRL's GRPOTrainer can score, and writing its weights back in the same format.

TRL computes per-token log-probabilities with a fused LM head that calls the model's `base_model`
(the backbone: input ids + images -> last hidden states) and applies `lm_head` itself in chunks.
The released architecture keeps the vision tower, the LLM and the head side by side
(`visual`, `model`, `lm_head`), so its `base_model` is the whole model; `for_grpo` gives the loaded
model a `base_model` that runs the image splice and the LLM (what the model's own forward does
before `lm_head`; a test holds the two to the same logits).
"""
from __future__ import annotations

import os
import shutil
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin")


class Backbone:
    """`model.base_model` for TRL: the model without its LM head, returning `last_hidden_state`."""

    def __init__(self, model: Any):
        self.model = model

    def __call__(self, input_ids=None, attention_mask=None, pixel_values=None, image_grid_thw=None,
                 inputs_embeds=None, mm_token_type_ids=None, **kwargs: Any):
        m = self.model
        if inputs_embeds is None:
            inputs_embeds = m.embed_inputs(input_ids, pixel_values, image_grid_thw)  # the model's own splice
        kwargs.pop("use_cache", None)
        return m.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False, **kwargs)


_VIEWS: dict[type, type] = {}


def for_grpo(model: Any) -> Any:
    """The same model object, its class extended with TRL's `base_model` (weights untouched)."""
    base = type(model)
    if getattr(base, "_vlmops_grpo_view", False):
        return model
    if base not in _VIEWS:
        # the same name and module as the remote code: transformers still treats it as that code (it keeps
        # creating `cache_position`, which the model's generation reads), checkpoints copy that code
        _VIEWS[base] = type(base.__name__, (base,), {"base_model": property(lambda self: Backbone(self)),
                                                     "_vlmops_grpo_view": True, "__module__": base.__module__})
    model.__class__ = _VIEWS[base]
    return model


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load(local_dir: str, dtype: str = "auto"):
    """(model, processor) of a release-format directory (trust_remote_code, as lmms-eval loads it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoProcessor

    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    processor = AutoProcessor.from_pretrained(local_dir, trust_remote_code=True, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(local_dir, trust_remote_code=True, dtype=getattr(torch, dtype))
    return model, processor


def write_release(model: Any, src_dir: str, dest_dir: str, shard_bytes: int = 2 * 1024 ** 3) -> None:
    """`dest_dir` = `src_dir`'s config, code, tokenizer and processor files + `model`'s weights
    (safetensors, the release's names: the loaded model's own state dict)."""
    from ..train.release_format import ShardWriter

    os.makedirs(dest_dir, exist_ok=True)
    for fn in sorted(os.listdir(src_dir)):
        path = os.path.join(src_dir, fn)
        if os.path.isfile(path) and not fn.endswith(WEIGHT_SUFFIXES) and not fn.startswith("."):
            shutil.copy(path, os.path.join(dest_dir, fn))
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    writer = ShardWriter(dest_dir, shard_bytes)
    for name, t in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # the release leaves a tied head out
        writer.add(name, t.detach().to("cpu").contiguous().clone())
    writer.close()
