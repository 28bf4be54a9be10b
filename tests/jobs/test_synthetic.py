"""The offline generators: deterministic, contract-shaped, loadable by HF."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlmops_jobs.common import synthetic


def _sha(path: str) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_tokenizer_loads_and_is_deterministic(tmp_path):
    from tokenizers import Tokenizer

    a = synthetic.make_tokenizer(str(tmp_path / "a"))
    b = synthetic.make_tokenizer(str(tmp_path / "b"))
    assert _sha(os.path.join(a, "tokenizer.json")) == _sha(os.path.join(b, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(a, "tokenizer.json"))
    assert 1000 <= tok.get_vocab_size() <= 2048
    for t in synthetic.SPECIAL_TOKENS:
        assert tok.token_to_id(t) is not None
    enc = tok.encode("<|im_start|>user\n<image>\nWhat is shown?<|im_end|>")
    assert enc.tokens[0] == "<|im_start|>" and "<image>" in enc.tokens


def test_tokenizer_autotokenizer_chat_template(tmp_path):
    transformers = pytest.importorskip("transformers")
    d = synthetic.make_tokenizer(str(tmp_path / "tok"))
    tok = transformers.AutoTokenizer.from_pretrained(d)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "<image>\nhi"}, {"role": "assistant", "content": "a cat"}], tokenize=False
    )
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>assistant\na cat<|im_end|>" in text
    ids = tok(text)["input_ids"]
    assert tok.convert_tokens_to_ids("<image>") in ids
    assert tok.pad_token == "<pad>"


def test_samples_layout_and_determinism(tmp_path):
    a = synthetic.make_samples(str(tmp_path / "a"), 120, seed=7, with_embeddings=8, n_concepts=6)
    b = synthetic.make_samples(str(tmp_path / "b"), 120, seed=7, with_embeddings=8, n_concepts=6)
    assert _sha(a["samples"]) == _sha(b["samples"])
    assert _sha(a["concepts"]) == _sha(b["concepts"])
    t = pq.read_table(a["samples"])
    assert t.column_names == ["id", "images", "conversations", "embedding"]
    rows = t.to_pylist()
    assert len({r["id"] for r in rows}) == 120
    counts = {len(r["images"]) for r in rows}
    assert counts == {0, 1, 2}
    for r in rows:
        conv = json.loads(r["conversations"])
        assert conv[0]["role"] == "user" and conv[1]["role"] == "assistant"
        assert conv[0]["content"].count("<image>") == len(r["images"])
        for p in r["images"]:
            assert os.path.exists(tmp_path / "a" / p)
        assert abs(np.linalg.norm(r["embedding"]) - 1) < 1e-4
    sizes = {tuple(s) for ss in a["image_sizes"] for s in ss}
    assert len(sizes) >= 4
    c = pq.read_table(a["concepts"])
    assert c.num_rows == 6 and c.column_names == ["text", "embedding"]
    # Zipf: concept 0 is the most frequent
    sc = np.bincount(a["sample_concepts"], minlength=6)
    assert sc.argmax() == 0
    # embeddings sit closest to their own concept's centroid
    emb = np.array(t.column("embedding").to_pylist(), dtype=np.float32)
    cent = np.array(c.column("embedding").to_pylist(), dtype=np.float32)
    assert (np.argmax(emb @ cent.T, axis=1) == np.array(a["sample_concepts"])).mean() > 0.95


def test_samples_no_embeddings_and_s3(s3_bucket):
    info = synthetic.make_samples(f"{s3_bucket}/syn", 10, seed=1)
    from vlmops_jobs.common import storage

    assert info["concepts"] is None
    fs, path = storage.get_fs(info["samples"])
    t = pq.read_table(path, filesystem=fs)
    assert t.column_names == ["id", "images", "conversations"]
    first_img = next(r["images"][0] for r in t.to_pylist() if r["images"])
    assert storage.exists(storage.join(f"{s3_bucket}/syn", first_img))


def test_make_lengths():
    L = synthetic.make_lengths(10000, seed=0)
    assert L.dtype == np.int32 and L.min() > 0
    C = synthetic.make_lengths(1000, kind="captions")
    assert C.min() >= 274 and C.max() <= 817
