"""The training stage's spec checks, written once (dependency-free).

Each rule has one message, a Python check and, where the CR alone decides it, the CEL text the CRD
carries. The job runs the Python checks at start (exit 2), and the API runs the same ones in its
pydantic validation (`vlmops validate`, the local runner, the operator: Stalled naming the field),
so a VLMTrainingStage that passes admission is never refused by its own job for a spec reason.
Messages start with the field path as written in the CR.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .model_shapes import PRESETS, VOCAB_DIVISIBLE_BY, Preset


@dataclass(frozen=True)
class StageFacts:
    world: int
    tensor: int
    pipeline: int
    context: int
    sequence_parallel: bool
    global_batch: int
    micro: int
    init_from_hf: bool
    lr: float
    min_lr: float
    warmup_fraction: float
    preset: Preset

    @property
    def model_parallel(self) -> int:
        return self.tensor * self.pipeline * self.context


@dataclass(frozen=True)
class Rule:
    message: str
    ok: Callable[[StageFacts], bool]
    cel: str | None  # None: not decidable from the CR alone (pydantic/job only)


def tensor_divisors(p: Preset) -> dict[str, int]:
    """Every size tensor parallelism splits: TP must divide each."""
    L, V = p.language, p.vision
    return {"language heads": L.num_heads, "language query groups": L.num_query_groups,
            "language FFN": L.ffn_hidden_size, "vision heads": V.num_heads, "vision FFN": V.ffn_hidden_size,
            "projector FFN": p.projector_ffn, "vocab padding": VOCAB_DIVISIBLE_BY}


def tensor_problems(p: Preset, tp: int) -> list[str]:
    return [f"{k} {n}" for k, n in tensor_divisors(p).items() if n % tp]


_W = "(self.nodes * self.gpusPerNode)"
_MP = "(self.parallelism.tensor * self.parallelism.pipeline * self.parallelism.context)"
_T = "self.parallelism.tensor"


def _preset_tp_cel() -> str:
    # a preset's shapes are not in the CR: the largest size every TP degree must divide, per preset
    table = ", ".join(f"'{n}': {math.gcd(*tensor_divisors(p).values())}" for n, p in sorted(PRESETS.items()))
    return f"!has(self.model.preset) || {{{table}}}[self.model.preset] % {_T} == 0"


_EXPLICIT_TP_CEL = (
    f"!has(self.model.language) || !has(self.model.vision) || ("
    f"self.model.language.numAttentionHeads % {_T} == 0"
    f" && (!has(self.model.language.numQueryGroups) || self.model.language.numQueryGroups % {_T} == 0)"
    f" && self.model.language.ffnHiddenSize % {_T} == 0"
    f" && self.model.vision.numAttentionHeads % {_T} == 0"
    f" && (4 * self.model.vision.hiddenSize) % {_T} == 0"
    f" && (4 * self.model.language.hiddenSize) % {_T} == 0"
    f" && {VOCAB_DIVISIBLE_BY} % {_T} == 0)")

TP_MESSAGE = ("spec.parallelism.tensor: must divide the model's attention heads, query groups and FFN sizes "
              f"(language, vision, projector) and {VOCAB_DIVISIBLE_BY}")

IMAGE_CELL = 28  # px per image token: patch 14 x 2x2 merge, the packer's unit (pack.token_lengths.image_tokens)
CELL_MESSAGE = (f"spec.model.vision: the image-token cell (patchSize x projector.mergeSize) must be {IMAGE_CELL} px "
                f"(patch 14 with merge 2, or patch 28 with merge 1) and imageSize a multiple of it")


def _cell_ok(p: Preset) -> bool:
    cell = p.vision.patch * (2 if p.vision.pixel_shuffle else 1)
    return cell == IMAGE_CELL and p.vision.tile % IMAGE_CELL == 0


_MERGE = "(has(self.model.projector) && has(self.model.projector.mergeSize) ? self.model.projector.mergeSize : 2)"
_PATCH = "(has(self.model.vision.patchSize) ? self.model.vision.patchSize : 14)"
_SIZE = "(has(self.model.vision.imageSize) ? self.model.vision.imageSize : 560)"
_CELL_CEL = (f"!has(self.model.vision) || ((({_MERGE} == 2 ? 2 : 1) * {_PATCH} == {IMAGE_CELL})"
             f" && ({_MERGE} == 1 || {_MERGE} == 2) && {_SIZE} % {IMAGE_CELL} == 0)")

RULES: tuple[Rule, ...] = (
    Rule("spec.parallelism: world size (nodes*gpusPerNode) must be divisible by tensor*pipeline*context",
         lambda f: f.world % f.model_parallel == 0,
         f"{_W} % {_MP} == 0"),
    Rule("spec.batch.global: must be a positive multiple of the data-parallel size "
         "(nodes*gpusPerNode / (tensor*pipeline*context))",
         lambda f: f.global_batch > 0 and (f.world < f.model_parallel
                                           or f.global_batch % (f.world // f.model_parallel) == 0),
         f"{_W} < {_MP} || self.batch.global % ({_W} / {_MP}) == 0"),  # > 0: the schema's minimum
    Rule("spec.batch.micro: must be 1: packed sequences are one micro-batch each",
         lambda f: f.micro == 1, "self.batch.micro == 1"),
    Rule("spec.parallelism.pipeline: pipeline parallelism is not supported yet (use 1)",
         lambda f: f.pipeline == 1, "self.parallelism.pipeline == 1"),
    Rule("spec.parallelism.context: context parallelism is not supported yet (use 1)",
         lambda f: f.context == 1, "self.parallelism.context == 1"),
    Rule("spec.parallelism.sequenceParallel: not supported yet (needs the Transformer Engine layer path)",
         lambda f: not f.sequence_parallel, "!self.parallelism.sequenceParallel"),
    Rule("spec.initFrom.huggingFace: starting from Hugging Face weights is not supported yet "
         "(convert them to a megatron checkpoint and use initFrom.checkpoint)",
         lambda f: not f.init_from_hf, "!has(self.initFrom) || !has(self.initFrom.huggingFace)"),
    Rule(TP_MESSAGE, lambda f: not tensor_problems(f.preset, f.tensor), None),  # CEL: two rules below
    Rule(CELL_MESSAGE, lambda f: _cell_ok(f.preset), _CELL_CEL),
    Rule("spec.optimizer.minLr: must not exceed optimizer.lr",
         lambda f: f.min_lr <= f.lr, "self.optimizer.minLr <= self.optimizer.lr"),
    Rule("spec.optimizer.warmupFraction: must be below 1",
         lambda f: 0 <= f.warmup_fraction < 1, "self.optimizer.warmupFraction < 1.0"),
)


def cel_rules() -> list[tuple[str, str]]:
    """(CEL, message) pairs for the VLMTrainingStage spec."""
    out = [(r.cel, r.message) for r in RULES if r.cel]
    out += [(_preset_tp_cel(), TP_MESSAGE), (_EXPLICIT_TP_CEL, TP_MESSAGE)]
    return out


def problems(f: StageFacts, detail: bool = True) -> list[str]:
    """Messages of the rules `f` breaks, in rule order (`detail`: say which sizes TP does not divide)."""
    out = []
    for r in RULES:
        if not r.ok(f):
            msg = r.message
            if detail and r.message == TP_MESSAGE:
                msg += f" (tensor {f.tensor} does not divide {', '.join(tensor_problems(f.preset, f.tensor))})"
            out.append(msg)
    return out
