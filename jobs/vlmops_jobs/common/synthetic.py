"""Offline generators shared by tests, benchmarks and the quickstart.

Nothing here touches the network: a tiny Hugging Face tokenizer trained on a built-in word
list, and a synthetic multimodal sample table (PNG images of varied sizes, ChatML-style
conversations, optional image embeddings drawn around concept centroids) laid out exactly as
`docs/contracts.md` describes. Everything is deterministic for a seed.

    from vlmops_jobs.common import synthetic
    tok_dir = synthetic.make_tokenizer("/tmp/tok")              # AutoTokenizer.from_pretrained(tok_dir)
    info = synthetic.make_samples("/tmp/data", 200, seed=0, with_embeddings=64, n_concepts=50)
    info["samples"]   # ".../samples.parquet"   (id, images, conversations[, embedding])
    info["concepts"]  # ".../concepts.parquet"  (text, embedding)   when with_embeddings

Paths may be plain local paths, `file://` or `s3://` URIs (written through fsspec, using the
same environment-driven options as every job).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import storage

# ---------------------------------------------------------------------------------------------
# Word list (built in, so the tokenizer and the texts need no download)
# ---------------------------------------------------------------------------------------------
_WORDS = """
a about above across after again against all almost alone along already also although always
among an and animal another answer any anything appear apple are area around art as ask at
away baby back ball bank bar base basket beach bear beautiful bed before begin behind below
bench best between bicycle big bike bird black blue board boat body book both bottle bottom
bowl box boy branch bread bridge bright bring brown building bus but by cake call camera can
car card carry cat chair change chart child city clock close cloud coat coffee cold color
come computer corner could country cow cup dark day desk did different do document dog door
down draw dress drink during each early east eat edge elephant empty end engine evening
every eye face fall family far farm fast father field figure fill find fire first fish five
floor flower fly follow food for forest four from front fruit full game garden girl give
glass go good grass gray great green ground group grow hair half hand hat have he head hear
heavy help her here high hill his hold home horse hot house how image in inside is it its
jacket just keep kitchen kite know lake lamp large last laptop leaf left leg less letter
light like line little long look low man many map market may men middle milk mirror more
morning mother mountain mouse much near neck new next night no north not number ocean of off
office old on one only open or orange other out over page paper park part people person
phone photo picture piece pink place plane plant plate play point pole price purple question
rain read red region right river road rock room round row run sand say scene screen sea seat
second see shape sheep she ship shirt shoe shop short show side sign sit six sky small snow
so sofa some south stand station stop store street sun surface table tail take tall tea
text that the their there these they thing this three through tie time to together top
tower town toy traffic train tree truck two under up use very view wall watch water wave way
we wear west what wheel when where which while white who why wide window with woman wood
word work write yellow you young zebra user assistant system helpful
""".split()

_QUESTIONS = [
    "What is shown in this image?",
    "Describe the picture in detail.",
    "What color is the object on the left?",
    "How many people are in the scene?",
    "Read the text in the document.",
    "What does the chart show?",
    "Where was this photo taken?",
    "Compare the two images.",
]

SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>", "<image>"]

# Qwen2-style ChatML template (default system prompt when the conversation has none). Content is
# a string, or (as transformers 5 and multimodal callers pass it) a list of text/image parts;
# both render the same text for the same conversation.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _corpus_lines(rng: np.random.Generator, n_lines: int = 400) -> list[str]:
    words = np.array(_WORDS)
    lines = [" ".join(_WORDS[i : i + 12]) for i in range(0, len(_WORDS), 12)]
    for _ in range(n_lines):
        k = int(rng.integers(4, 20))
        lines.append(" ".join(words[rng.integers(0, len(words), k)]).capitalize() + ".")
    lines.extend(_QUESTIONS)
    return lines


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
def make_tokenizer(dir: str, vocab_size: int = 1536, qwen_vl: bool = False) -> str:
    """Train a tiny byte-level BPE tokenizer and save it in HF layout; returns the local dir.

    The directory holds `tokenizer.json`, `tokenizer_config.json` (with a Qwen-style ChatML
    `chat_template`) and `special_tokens_map.json`, so both
    `tokenizers.Tokenizer.from_file(dir + "/tokenizer.json")` and
    `transformers.AutoTokenizer.from_pretrained(dir)` load it. Deterministic. `qwen_vl`: images as the
    released Qwen tokenizers mark them (`<|vision_start|><|image_pad|><|vision_end|>`) instead of `<image>`.
    """
    from .image_tokens import MARKER, QWEN_VL

    specials = [t for t in SPECIAL_TOKENS if t != MARKER] + list(QWEN_VL) if qwen_vl else list(SPECIAL_TOKENS)
    template = CHAT_TEMPLATE.replace("'<image>'", "'" + "".join(QWEN_VL) + "'") if qwen_vl else CHAT_TEMPLATE
    import os

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if dir.startswith("file://"):
        dir = dir[len("file://") :]
    os.makedirs(dir, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rng = np.random.default_rng(1234)
    tok.train_from_iterator(_corpus_lines(rng), trainer=trainer)
    tok.save(os.path.join(dir, "tokenizer.json"))

    added = {}
    for t in specials:
        added[str(tok.token_to_id(t))] = {
            "content": t, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True,
        }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "additional_special_tokens": specials[1:],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<pad>",
        "unk_token": None,
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": False,
        "chat_template": template,
    }
    with open(os.path.join(dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    with open(os.path.join(dir, "special_tokens_map.json"), "w") as f:
        json.dump(
            {"eos_token": "<|im_end|>", "pad_token": "<pad>",
             "additional_special_tokens": specials[1:]},
            f, indent=2, sort_keys=True,
        )
    return dir


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------
DEFAULT_IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (32, 32), (64, 48), (48, 96), (120, 80), (160, 160), (224, 168), (200, 300), (320, 240),
)


def _png(rng: np.random.Generator, w: int, h: int) -> bytes:
    from PIL import Image

    # A smooth gradient plus a few blocks: compresses well, still a real varied image.
    base = rng.integers(0, 256, size=3)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):
        arr[..., c] = (base[c] + (xx * (c + 1) + yy * (3 - c)) // 2) % 256
    for _ in range(3):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        arr[y0 : y0 + h // 4 + 1, x0 : x0 + w // 4 + 1] = rng.integers(0, 256, size=3)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _sentence(rng: np.random.Generator, n_words: int) -> str:
    idx = rng.integers(0, len(_WORDS), n_words)
    s = " ".join(_WORDS[i] for i in idx)
    return s[:1].upper() + s[1:] + "."


def make_samples(
    dir: str,
    n: int,
    seed: int = 0,
    image_sizes: Sequence[tuple[int, int]] = DEFAULT_IMAGE_SIZES,
    with_embeddings: int | None = None,
    n_concepts: int = 32,
    text_only_fraction: float = 0.15,
    two_image_fraction: float = 0.15,
    mean_answer_words: float = 25.0,
    zipf_s: float = 1.1,
    embedding_noise: float = 0.35,
    id_prefix: str = "s",
    colour_fraction: float = 0.0,
) -> dict[str, Any]:
    """Write `n` synthetic samples under `dir`; returns a summary dict.

    Layout: `<dir>/images/<id>_<j>.png`, `<dir>/samples.parquet` (columns `id` string,
    `images` list<string> relative to the parquet's directory, `conversations` JSON string,
    and `embedding` list<float32> when `with_embeddings` is a dimension) and, with embeddings,
    `<dir>/concepts.parquet` (`text` string, `embedding` list<float32>, unit vectors).
    Sample embeddings are unit vectors around the centroid of one concept each, concepts drawn
    from a Zipf(`zipf_s`) distribution (concept 0 most frequent).

    `colour_fraction` of the samples are instead one solid-colour image (COLOURS) with the question
    COLOUR_QUESTION and the colour's name as the answer: a task a tiny model can learn (the
    quickstart's EvalSuite asks the same question); 0 leaves every other sample as it was.

    Returns {"dir", "samples", "concepts" (or None), "n", "images", "ids", "sample_concepts"
    (list of the concept index per sample, or None), "image_sizes" (list of [w, h] lists per sample)}.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    fs, root = storage.get_fs(dir)
    root = root.rstrip("/")
    if not storage._is_object_store(fs):
        fs.makedirs(f"{root}/images", exist_ok=True)

    width = max(6, len(str(max(n - 1, 0))))
    ids = [f"{id_prefix}{i:0{width}d}" for i in range(n)]
    shape = _SampleShape(image_sizes, text_only_fraction, two_image_fraction, mean_answer_words, colour_fraction)
    rows = [_write_sample(rng, fs, root, sid, shape) for sid in ids]
    cols: dict[str, Any] = {
        "id": pa.array(ids, pa.string()),
        "images": pa.array([r.images for r in rows], pa.list_(pa.string())),
        "conversations": pa.array([r.conversation for r in rows], pa.string()),
    }
    concepts_uri = None
    sample_concepts = None
    if with_embeddings:
        concepts = _concept_embeddings(n, int(with_embeddings), seed, n_concepts, zipf_s, embedding_noise)
        cols["embedding"] = _vectors(concepts.samples)
        concepts_uri = _join_like(dir, "concepts.parquet")
        with fs.open(f"{root}/concepts.parquet", "wb") as f:
            pq.write_table(pa.table({"text": pa.array(concepts.texts, pa.string()),
                                     "embedding": _vectors(concepts.centroids)}), f)
        sample_concepts = [int(c) for c in concepts.of_sample]

    with fs.open(f"{root}/samples.parquet", "wb") as f:
        pq.write_table(pa.table(cols), f)
    return {
        "dir": dir,
        "samples": _join_like(dir, "samples.parquet"),
        "concepts": concepts_uri,
        "n": n,
        "images": sum(len(r.images) for r in rows),
        "ids": ids,
        "sample_concepts": sample_concepts,
        "image_sizes": [r.sizes for r in rows],
    }


@dataclass(frozen=True)
class _SampleShape:
    image_sizes: Sequence[tuple[int, int]]
    text_only_fraction: float
    two_image_fraction: float
    mean_answer_words: float
    colour_fraction: float = 0.0


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "white": (250, 250, 250)}
COLOUR_QUESTION = "What colour is the image?\nAnswer with one word."


def _colour_sample(rng: np.random.Generator, fs: Any, root: str, sid: str, shape: _SampleShape) -> _Sample:
    from PIL import Image

    name, rgb = list(COLOURS.items())[int(rng.integers(0, len(COLOURS)))]
    w, h = shape.image_sizes[int(rng.integers(0, len(shape.image_sizes)))]
    buf = io.BytesIO()
    Image.new("RGB", (int(w), int(h)), rgb).save(buf, format="PNG")
    rel = f"images/{sid}_0.png"
    with fs.open(f"{root}/{rel}", "wb") as f:
        f.write(buf.getvalue())
    conv = [{"role": "user", "content": "<image>\n" + COLOUR_QUESTION}, {"role": "assistant", "content": name}]
    return _Sample([rel], json.dumps(conv), [[int(w), int(h)]])


@dataclass(frozen=True)
class _Sample:
    images: list[str]         # relative to the parquet's directory
    conversation: str         # JSON
    sizes: list[list[int]]    # [w, h] per image


def _write_sample(rng: np.random.Generator, fs: Any, root: str, sid: str, shape: _SampleShape) -> _Sample:
    """One sample: 0, 1 or 2 images (written as PNGs), a question and a log-normal length answer."""
    if shape.colour_fraction and rng.random() < shape.colour_fraction:
        return _colour_sample(rng, fs, root, sid, shape)
    u = rng.random()
    k = 0 if u < shape.text_only_fraction else (2 if u < shape.text_only_fraction + shape.two_image_fraction else 1)
    images: list[str] = []
    sizes: list[list[int]] = []
    for j in range(k):
        w, h = shape.image_sizes[int(rng.integers(0, len(shape.image_sizes)))]
        data = _png(rng, int(w), int(h))
        name = f"images/{sid}_{j}.png"
        with fs.open(f"{root}/{name}", "wb") as f:
            f.write(data)
        images.append(name)
        sizes.append([int(w), int(h)])
    q = _QUESTIONS[int(rng.integers(0, len(_QUESTIONS)))] if k else _sentence(rng, int(rng.integers(5, 15))) + " Explain."
    user = "".join("<image>\n" for _ in range(k)) + q
    n_words = max(1, int(rng.lognormal(np.log(shape.mean_answer_words), 0.6)))
    answer = " ".join(_sentence(rng, max(1, n_words // 3)) for _ in range(3))
    conv = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return _Sample(images, json.dumps(conv, ensure_ascii=False), sizes)


@dataclass(frozen=True)
class _Concepts:
    texts: list[str]
    centroids: np.ndarray   # (concepts, dim) unit vectors
    of_sample: np.ndarray   # concept index per sample, Zipf-distributed
    samples: np.ndarray     # (n, dim) unit vectors around their concept's centroid


def _concept_embeddings(n: int, dim: int, seed: int, n_concepts: int, zipf_s: float, noise: float) -> _Concepts:
    crng = np.random.default_rng(seed + 1_000_003)
    cent = crng.standard_normal((n_concepts, dim)).astype(np.float32)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    p = 1.0 / np.arange(1, n_concepts + 1, dtype=np.float64) ** zipf_s
    p /= p.sum()
    sc = crng.choice(n_concepts, size=n, p=p)
    emb = cent[sc] + (noise / np.sqrt(dim)) * crng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts = [f"{_WORDS[c % len(_WORDS)]} {c}" for c in range(n_concepts)]
    return _Concepts(texts, cent, sc, emb.astype(np.float32))


def _vectors(matrix: np.ndarray):
    """A float32 matrix as a parquet list<float32> column."""
    import pyarrow as pa

    dim = matrix.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim).cast(
        pa.list_(pa.float32()))


def _join_like(dir: str, name: str) -> str:
    return storage.join(dir, name)


# ---------------------------------------------------------------------------------------------
# Lengths only (benchmarks): a LLaVA-like token-length mix without any files
# ---------------------------------------------------------------------------------------------
def make_lengths(n: int, seed: int = 0, kind: str = "llava") -> np.ndarray:
    """Synthetic per-sample token lengths (int32) for packing benchmarks.

    kind="llava": ~10% text-only (lognormal text), otherwise 1 image (12% two) of 64-3000 tokens
    (log-uniform) plus lognormal text; kind="captions": short-caption data, uniform 274-817.
    """
    rng = np.random.default_rng(seed)
    if kind == "captions":
        return rng.integers(274, 818, size=n, dtype=np.int64).astype(np.int32)
    text = np.clip(rng.lognormal(np.log(180), 0.9, size=n), 8, 12000).astype(np.int64)
    n_img = np.where(rng.random(n) < 0.10, 0, np.where(rng.random(n) < 0.12, 2, 1))
    img = np.exp(rng.uniform(np.log(64), np.log(3000), size=(n, 2))).astype(np.int64)
    img_tokens = img[:, 0] * (n_img >= 1) + img[:, 1] * (n_img >= 2)
    return (text + img_tokens).astype(np.int32)
