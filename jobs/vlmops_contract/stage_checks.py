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


_MERGE_EARLY = "(has(self.model.projector) && has(self.model.projector.mergeSize) ? self.model.projector.mergeSize : 2)"
_EXPLICIT_TP_CEL = (
    f"!has(self.model.language) || !has(self.model.vision) || ("
    f"self.model.language.numAttentionHeads % {_T} == 0"
    f" && (!has(self.model.language.numQueryGroups) || self.model.language.numQueryGroups % {_T} == 0)"
    f" && self.model.language.ffnHiddenSize % {_T} == 0"
    f" && self.model.vision.numAttentionHeads % {_T} == 0"
    f" && (has(self.model.vision.ffnHiddenSize) ? self.model.vision.ffnHiddenSize : 4 * self.model.vision.hiddenSize)"
    f" % {_T} == 0"
    f" && ({_MERGE_EARLY} * {_MERGE_EARLY} * self.model.vision.hiddenSize) % {_T} == 0"
    f" && (4 * self.model.language.hiddenSize) % {_T} == 0"
    f" && {VOCAB_DIVISIBLE_BY} % {_T} == 0)")

TP_MESSAGE = ("spec.parallelism.tensor: must divide the model's attention heads, query groups and FFN sizes "
              f"(language, vision, projector) and {VOCAB_DIVISIBLE_BY}")

IMAGE_CELL = 28  # px per image token: patch 14 x 2x2 merge, the packer's unit (pack.token_lengths.image_tokens)
CELL_MESSAGE = (f"spec.model.vision.patchSize: the image-token cell (patchSize x projector.mergeSize) must be "
                f"{IMAGE_CELL} px, the packer's unit (patch 14 with merge 2, or patch 28 with merge 1)")


def _cell_ok(p: Preset) -> bool:
    return p.vision.cell == IMAGE_CELL


_MERGE = "(has(self.model.projector) && has(self.model.projector.mergeSize) ? self.model.projector.mergeSize : 2)"
_PATCH = "(has(self.model.vision.patchSize) ? self.model.vision.patchSize : 14)"
_CELL_CEL = f"!has(self.model.vision) || {_MERGE} * {_PATCH} == {IMAGE_CELL}"

# Shapes an explicit block must have for the trainer to build it (the presets have them).
_V = "self.model.vision"
_L = "self.model.language"
VISION_HEADS_MESSAGE = ("spec.model.vision.numAttentionHeads: must divide vision.hiddenSize into heads whose size "
                        "is a multiple of 4 (2D rotary positions: a quarter of each head per axis and sin/cos)")
_VISION_HEADS_CEL = (f"!has({_V}) || ({_V}.hiddenSize % {_V}.numAttentionHeads == 0"
                     f" && ({_V}.hiddenSize / {_V}.numAttentionHeads) % 4 == 0)")
GROUPS_MESSAGE = "spec.model.language.numQueryGroups: must divide language.numAttentionHeads"
_GROUPS_CEL = (f"!has({_L}) || !has({_L}.numQueryGroups)"
               f" || {_L}.numAttentionHeads % {_L}.numQueryGroups == 0")
HEAD_DIM_MESSAGE = ("spec.model.language.headDim: must be even (rotary positions), and without headDim "
                    "language.numAttentionHeads must divide language.hiddenSize into even heads")
_HEAD_DIM_CEL = (f"!has({_L}) || (has({_L}.headDim) ? {_L}.headDim % 2 == 0 :"
                 f" ({_L}.hiddenSize % {_L}.numAttentionHeads == 0"
                 f" && ({_L}.hiddenSize / {_L}.numAttentionHeads) % 2 == 0))")


def _vision_heads_ok(p: Preset) -> bool:
    v = p.vision
    return v.hidden_size % v.num_heads == 0 and v.head_dim % 4 == 0


def _head_dim_ok(p: Preset) -> bool:
    return p.language.head_dim > 0 and p.language.head_dim % 2 == 0  # 0: heads do not divide hiddenSize


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
    Rule(TP_MESSAGE, lambda f: not tensor_problems(f.preset, f.tensor), None),  # CEL: two rules below
    Rule(CELL_MESSAGE, lambda f: _cell_ok(f.preset), _CELL_CEL),
    Rule(VISION_HEADS_MESSAGE, lambda f: _vision_heads_ok(f.preset), _VISION_HEADS_CEL),
    Rule(GROUPS_MESSAGE, lambda f: f.preset.language.num_heads % f.preset.language.num_query_groups == 0,
         _GROUPS_CEL),
    Rule(HEAD_DIM_MESSAGE, lambda f: _head_dim_ok(f.preset), _HEAD_DIM_CEL),
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
