"""Model shapes (`spec.model.preset` and explicit `spec.model` blocks): what the trainer builds and
what admission checks TP against (heads, query groups, FFN sizes).

`tiny` runs on CPU in seconds and exports to a `transformers` LLaVA (LlavaForConditionalGeneration).
`llava-ov-1.5-4b` / `-8b` carry the published shapes: a Qwen3 LLM (Qwen3-4B / Qwen3-8B) and a
ViT-L/14 vision tower with a 2x2 patch merge before the 2-layer MLP projector. See
docs/jobs-train.md for where megatron-core's CLIP ViT differs from RICE-ViT (native resolution,
2D RoPE): the large presets are megatron-core approximations, not weight-compatible with the
released checkpoints.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class VisionShape:
    num_layers: int
    hidden_size: int
    num_heads: int
    ffn_hidden_size: int
    patch: int          # ViT patch size in pixels
    tile: int           # the ViT's fixed input side (megatron CLIPViTModel has a fixed img_h/img_w)
    pixel_shuffle: bool  # 2x2 merge of patch features before the projector (InternVL-style)

    @property
    def tokens_per_tile(self) -> int:
        n = (self.tile // self.patch) ** 2
        return n // 4 if self.pixel_shuffle else n

    @property
    def params(self) -> int:
        h, f, L = self.hidden_size, self.ffn_hidden_size, self.num_layers
        per_layer = 4 * h * h + 2 * h * f + 9 * h + f  # attn + mlp + biases + 2 layernorms
        return L * per_layer + 3 * self.patch * self.patch * h + ((self.tile // self.patch) ** 2 + 1) * h


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

    @property
    def params_no_embedding(self) -> int:
        h, L, d = self.hidden_size, self.num_layers, self.head_dim
        q = self.num_heads * d
        kv = self.num_query_groups * d
        attn = h * (q + 2 * kv) + q * h + 2 * d
        mlp = 3 * h * self.ffn_hidden_size
        return L * (attn + mlp + 2 * h) + h


@dataclass(frozen=True)
class Preset:
    name: str
    vision: VisionShape
    language: LanguageShape
    projector_ffn: int
    hf_exportable: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


# The released models' vision tower, as megatron-core's CLIP ViT approximates it.
_VIT_L_448 = VisionShape(num_layers=24, hidden_size=1024, num_heads=16, ffn_hidden_size=4096, patch=14, tile=448,
                         pixel_shuffle=True)
_VIT_NOTES = ("vision: megatron CLIP ViT-L/14 on fixed 448px tiles + 2x2 pixel shuffle, not RICE-ViT "
              "(native resolution, 2D RoPE)",)

PRESETS: dict[str, Preset] = {
    # One 28x28 patch per tile = one image token per 28x28 region, so a packed sequence's
    # `imageTokens` (H'/28 * W'/28) is exactly what the model consumes. (The 2x2 merge of the
    # real recipe is folded into the 28px patch so that the model maps 1:1 onto HF LLaVA.)
    "tiny": Preset(
        name="tiny",
        vision=VisionShape(num_layers=2, hidden_size=32, num_heads=2, ffn_hidden_size=64, patch=28, tile=28,
                           pixel_shuffle=False),
        language=LanguageShape(num_layers=2, hidden_size=64, num_heads=4, num_query_groups=2, head_dim=16,
                               ffn_hidden_size=128, vocab_size=0, max_sequence_length=4096),
        projector_ffn=64,
        hf_exportable=True,
    ),
    "llava-ov-1.5-4b": Preset(
        name="llava-ov-1.5-4b",
        vision=_VIT_L_448,
        language=LanguageShape(num_layers=36, hidden_size=2560, num_heads=32, num_query_groups=8, head_dim=128,
                               ffn_hidden_size=9728, vocab_size=151936, max_sequence_length=16384,
                               tie_embeddings=True),
        projector_ffn=2560 * 4,
        hf_exportable=False,
        notes=_VIT_NOTES,
    ),
    "llava-ov-1.5-8b": Preset(
        name="llava-ov-1.5-8b",
        vision=_VIT_L_448,
        language=LanguageShape(num_layers=36, hidden_size=4096, num_heads=32, num_query_groups=8, head_dim=128,
                               ffn_hidden_size=12288, vocab_size=151936, max_sequence_length=16384),
        projector_ffn=4096 * 4,
        hf_exportable=False,
        notes=_VIT_NOTES,
    ),
}

VOCAB_DIVISIBLE_BY = 128  # independent of TP, so checkpoints move between TP sizes (TP must divide it)


def padded_vocab(n: int) -> int:
    return -(-n // VOCAB_DIVISIBLE_BY) * VOCAB_DIVISIBLE_BY


def preset_from_model_json(text: str) -> Preset:
    """A Preset from the explicit `spec.model` blocks the operator passes as `--model-json`
    (API wire format: {"vision": {...}, "language": {...}, "projector": {...}})."""
    import json

    m = json.loads(text)
    v, lang, proj = m["vision"], m["language"], m.get("projector") or {}
    heads = lang["numAttentionHeads"]
    vision = VisionShape(num_layers=v["numLayers"], hidden_size=v["hiddenSize"], num_heads=v["numAttentionHeads"],
                         ffn_hidden_size=4 * v["hiddenSize"], patch=v.get("patchSize", 14),
                         tile=v.get("imageSize", 560), pixel_shuffle=proj.get("mergeSize", 2) == 2)
    language = LanguageShape(num_layers=lang["numLayers"], hidden_size=lang["hiddenSize"], num_heads=heads,
                             num_query_groups=lang.get("numQueryGroups") or heads,
                             head_dim=lang["hiddenSize"] // heads, ffn_hidden_size=lang["ffnHiddenSize"],
                             vocab_size=lang["vocabSize"], max_sequence_length=16384)
    return Preset(name="custom", vision=vision, language=language, projector_ffn=4 * lang["hiddenSize"],
                  hf_exportable=False, notes=("explicit spec.model blocks",))
