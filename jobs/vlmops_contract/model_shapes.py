"""Model shapes (`spec.model.preset` and explicit `spec.model` blocks): what the trainer builds and
what admission checks TP against (heads, query groups, FFN sizes).

Every preset is the LLaVA-OneVision-1.5 architecture: a RICE-ViT vision tower (native-resolution
14 px patches, a class token per image, 2D rotary positions), a patch merger (LayerNorm, then the
2x2 neighbouring patches concatenated through a 2-layer GELU MLP into the LLM's width) and a Qwen3
LLM (GQA, q/k RMSNorm, SwiGLU, 1D RoPE). `llava-ov-1.5-4b` / `-8b` carry the released shapes
exactly (docs/jobs-train.md states their parameter counts next to the released ones); `tiny` is
the same architecture at a size that runs on CPU in seconds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class VisionShape:
    """RICE-ViT (HF `vision_config`: depth, hidden_size, num_heads, intermediate_size, patch_size,
    spatial_merge_size, layer_norm_eps)."""

    num_layers: int
    hidden_size: int
    num_heads: int
    ffn_hidden_size: int
    patch: int = 14        # px per patch side
    merge: int = 2         # patch merger: merge x merge neighbouring patches -> one LLM token
    norm_eps: float = 1e-5
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def cell(self) -> int:
        """px per image token side (patch x merge): the packer's unit."""
        return self.patch * self.merge

    @property
    def merged_size(self) -> int:
        return self.hidden_size * self.merge * self.merge

    @property
    def params(self) -> int:
        """Vision tower (without the merger)."""
        h, f, L = self.hidden_size, self.ffn_hidden_size, self.num_layers
        per_layer = 4 * h * h + 2 * h * f + 9 * h + f  # qkv+proj (+biases), fc1/fc2 (+biases), 2 LayerNorms
        # patch embedding (no bias), class token, the class token's rotary angles, pre-LayerNorm
        return L * per_layer + 3 * self.patch * self.patch * h + h + self.head_dim // 2 + 2 * h


@dataclass(frozen=True)
class LanguageShape:
    num_layers: int
    hidden_size: int
    num_heads: int
    num_query_groups: int
    head_dim: int
    ffn_hidden_size: int
    vocab_size: int          # before padding; `tiny` takes the tokenizer's size instead
    max_sequence_length: int
    rope_base: float = 1_000_000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = False
    max_positions: int = 0   # what the exported config declares (0: max_sequence_length)

    @property
    def max_position_embeddings(self) -> int:
        return self.max_positions or self.max_sequence_length

    @property
    def params_no_embedding(self) -> int:
        h, L, d = self.hidden_size, self.num_layers, self.head_dim
        q = self.num_heads * d
        kv = self.num_query_groups * d
        attn = h * (q + 2 * kv) + q * h + 2 * d  # q/k/v/o + q/k RMSNorm
        mlp = 3 * h * self.ffn_hidden_size
        return L * (attn + mlp + 2 * h) + h

    def params(self, vocab: int) -> int:
        return self.params_no_embedding + vocab * self.hidden_size * (1 if self.tie_embeddings else 2)


@dataclass(frozen=True)
class Preset:
    name: str
    vision: VisionShape
    language: LanguageShape
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def projector_ffn(self) -> int:
        """The merger MLP's width (= its input: merge^2 concatenated patch features)."""
        return self.vision.merged_size

    @property
    def projector_params(self) -> int:
        m, h = self.vision.merged_size, self.language.hidden_size
        return 2 * self.vision.hidden_size + m * m + m + m * h + h

    def params(self, vocab: int | None = None) -> int:
        """Total parameters with `vocab` embedding rows (default: the preset's vocab)."""
        v = vocab or self.language.vocab_size
        return self.vision.params + self.projector_params + self.language.params(v)

    def to_json(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


# RICE-ViT-L/14 (DeepGlint's rice-vit-large-patch14-560), the released models' vision tower
_RICE_L = VisionShape(num_layers=24, hidden_size=1024, num_heads=16, ffn_hidden_size=4096)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        vision=VisionShape(num_layers=2, hidden_size=32, num_heads=2, ffn_hidden_size=64),
        language=LanguageShape(num_layers=2, hidden_size=64, num_heads=4, num_query_groups=2, head_dim=16,
                               ffn_hidden_size=128, vocab_size=0, max_sequence_length=4096),
    ),
    # lmms-lab/LLaVA-OneVision-1.5-4B-Instruct: RICE-ViT-L + Qwen3-4B
    "llava-ov-1.5-4b": Preset(
        name="llava-ov-1.5-4b",
        vision=_RICE_L,
        language=LanguageShape(num_layers=36, hidden_size=2560, num_heads=32, num_query_groups=8, head_dim=128,
                               ffn_hidden_size=9728, vocab_size=151936, max_sequence_length=16384,
                               rope_base=1_000_000.0, tie_embeddings=False),
    ),
    # lmms-lab/LLaVA-OneVision-1.5-8B-Instruct: RICE-ViT-L + Qwen3-8B
    "llava-ov-1.5-8b": Preset(
        name="llava-ov-1.5-8b",
        vision=_RICE_L,
        language=LanguageShape(num_layers=36, hidden_size=4096, num_heads=32, num_query_groups=8, head_dim=128,
                               ffn_hidden_size=12288, vocab_size=151936, max_sequence_length=16384,
                               rope_base=1_000_000.0, tie_embeddings=False, max_positions=40960),
    ),
}

VOCAB_DIVISIBLE_BY = 128  # independent of TP, so checkpoints move between TP sizes (TP must divide it)


def padded_vocab(n: int) -> int:
    return -(-n // VOCAB_DIVISIBLE_BY) * VOCAB_DIVISIBLE_BY


def preset_from_model_json(text: str) -> Preset:
    """A Preset from the explicit `spec.model` blocks the operator passes as `--model-json` (API wire
    format: {"vision": {...}, "language": {...}, "projector": {...}}). Every field the API accepts is
    used here; defaults are the API's."""
    import json

    m = json.loads(text)
    v, lang, proj = m["vision"], m["language"], m.get("projector") or {}
    heads = lang["numAttentionHeads"]
    vision = VisionShape(num_layers=v["numLayers"], hidden_size=v["hiddenSize"], num_heads=v["numAttentionHeads"],
                         ffn_hidden_size=v.get("ffnHiddenSize") or 4 * v["hiddenSize"],
                         patch=v.get("patchSize", 14), merge=proj.get("mergeSize", 2))
    language = LanguageShape(num_layers=lang["numLayers"], hidden_size=lang["hiddenSize"], num_heads=heads,
                             num_query_groups=lang.get("numQueryGroups") or heads,
                             head_dim=lang.get("headDim") or _whole(lang["hiddenSize"], heads),
                             ffn_hidden_size=lang["ffnHiddenSize"], vocab_size=lang["vocabSize"],
                             max_sequence_length=lang.get("maxSequenceLength", 16384),
                             rope_base=float(lang.get("ropeBase", 1_000_000.0)),
                             tie_embeddings=bool(lang.get("tieEmbeddings", False)))
    return Preset(name="custom", vision=vision, language=language, notes=("explicit spec.model blocks",))


def _whole(a: int, b: int) -> int:
    """a / b when b divides a, else 0 (no such size: the stage checks reject it, naming the field)."""
    return a // b if b and a % b == 0 else 0
