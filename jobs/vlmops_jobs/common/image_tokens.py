"""How an image sits in a tokenizer's text, for the packer's counts and the trainer's ids alike.

Conversations mark images with `<image>` (the LLaVA data format). A tokenizer with the release's
Qwen-VL tokens (the Qwen2/Qwen3 tokenizers LLaVA-OneVision-1.5 ships) renders each marker as
`<|vision_start|><|image_pad|><|vision_end|>`, and `<|image_pad|>` is the token whose place the image's
features take, as in the released models and their processor. Otherwise the tokenizer must have
`<image>` itself as one token (vlmops' synthetic tokenizers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

MARKER = "<image>"
QWEN_VL = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")


@dataclass(frozen=True)
class ImageTokens:
    pad: str          # the one token (per image, in text space) the image's features replace
    before: str = ""  # special tokens around it, kept as text tokens
    after: str = ""

    @property
    def text(self) -> str:
        return self.before + self.pad + self.after

    def render(self, text: str) -> str:
        """`text` with every `<image>` marker in this tokenizer's form."""
        return text.replace(MARKER, self.text) if self.text != MARKER else text


def for_vocab(vocab: Mapping[str, int]) -> ImageTokens | None:
    """The image tokens of a tokenizer (its vocabulary, added tokens included); None if it has neither form."""
    if all(t in vocab for t in QWEN_VL):
        return ImageTokens(pad=QWEN_VL[1], before=QWEN_VL[0], after=QWEN_VL[2])
    if MARKER in vocab:
        return ImageTokens(pad=MARKER)
    return None


MISSING = (f"has neither the Qwen-VL image tokens ({', '.join(QWEN_VL)}) nor a single {MARKER} token: the image "
           "placeholders could not be counted or replaced")
