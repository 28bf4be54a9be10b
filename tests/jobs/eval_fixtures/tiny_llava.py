"""Offline test fixtures for the EvalSuite job: a tiny random HF LLaVA and tiny task data.

Nothing is downloaded: the tokenizer is a `tokenizers` WordLevel model wrapped in
PreTrainedTokenizerFast, the processor is LlavaProcessor(CLIPImageProcessor, tokenizer), and the
model is LlavaForConditionalGeneration with a 1-layer CLIP vision tower and a 1-layer Llama.
"""
from __future__ import annotations

import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS_SRC = os.path.join(HERE, "tiny_tasks")

WORDS = ["red", "green", "blue", "yellow", "one", "two", "three", "four", "1", "2", "3", "4",
         "what", "color", "is", "this", "how", "many", "squares", "answer", "with", "a", "single",
         "word", "user", "assistant", ":", ".", "?", "yes", "no"]
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
IMAGE_SIZE = 28
PATCH = 14

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<image> "
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}


def build_tiny_llava(path: str, seed: int = 0) -> str:
    """Save a tiny random LLaVA checkpoint (model + processor + tokenizer) under `path`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", extra_special_tokens={"image_token": "<image>"}
                                   ) if _accepts_extra_special() else PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        additional_special_tokens=["<image>"])
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=fast, patch_size=PATCH,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH,
                                       projection_dim=16),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=3),
        image_token_index=vocab["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = 3
    model.generation_config.eos_token_id = 2
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _accepts_extra_special() -> bool:
    try:
        import transformers

        major = int(transformers.__version__.split(".")[0])
        return major >= 5
    except Exception:
        return False


def make_tasks(dest: str) -> str:
    """Copy the tiny task YAMLs to `dest` and generate their data (JSONL + PNG images)."""
    from PIL import Image, ImageDraw

    shutil.copytree(TASKS_SRC, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    data = os.path.join(dest, "data")
    os.makedirs(data, exist_ok=True)
    vqa, count = [], []
    for i, (name, rgb) in enumerate(COLORS.items()):
        img = Image.new("RGB", (32, 32), rgb)
        fname = f"color_{i}.png"
        img.save(os.path.join(data, fname))
        vqa.append({"id": f"c{i}", "image": fname, "question": "what color is this ?", "answer": name})
    for n in (1, 2, 3):
        img = Image.new("RGB", (32, 32), (255, 255, 255))
        d = ImageDraw.Draw(img)
        for k in range(n):
            d.rectangle([2 + 10 * k, 10, 8 + 10 * k, 16], fill=(0, 0, 0))
        fname = f"count_{n}.png"
        img.save(os.path.join(data, fname))
        count.append({"id": f"n{n}", "image": fname, "question": "how many squares ?", "answer": str(n)})
    for fname, rows in (("tiny_vqa.jsonl", vqa), ("tiny_count.jsonl", count)):
        with open(os.path.join(data, fname), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return dest
