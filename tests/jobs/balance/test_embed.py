"""BalancedCorpus optional embed step with a tiny randomly initialised CLIP built in the test."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmops_jobs.common import storage

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_pool import run_job, write_parquet  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
PIL = pytest.importorskip("PIL.Image")


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiny_clip(path: Path) -> None:
    """A random CLIP (2 layers, 32-d, 32x32 images) and a byte-level tokenizer without merges."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    path.mkdir(parents=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, eos_token_id=vocab["<|endoftext|>"],
                         bos_token_id=vocab["<|startoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).eval().save_pretrained(path)
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(path)


def test_embedded_samples_are_retrieved_and_balanced(tmp_path, capsys):
    from PIL import Image

    model = tmp_path / "clip"
    tiny_clip(model)
    root = f"file://{tmp_path}"
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "img").mkdir(parents=True)
    n = 24
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "data" / "img" / f"{i}.png")
    images = [[f"img/{i}.png"] if i % 6 else [] for i in range(n)]  # every 6th sample has no image
    images[1] = ["img/1.png", "img/2.png"]
    convs = [json.dumps([{"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": str(i)}])
             for i in range(n)]
    write_parquet(f"{root}/data/samples.parquet",
                  pa.table({"id": [f"x{i}" for i in range(n)], "images": images, "conversations": convs}))
    write_parquet(f"{root}/data/concepts.parquet", pa.table({"text": [f"a photo of thing {j}" for j in range(10)]}))
    out = f"{root}/out"
    for shard in range(2):
        rc, res, err = run_job(["embed", "--source", f"{root}/data/samples.parquet", "--id-field", "id",
                            "--image-field", "images", "--embedder", str(model), "--batch-size", "4",
                            "--concepts", f"{root}/data/concepts.parquet", "--concept-text-field", "text",
                            "--shard", str(shard), "--shards", "2", "--output", out], capsys)
        assert rc == 0, err
        assert res["dim"] == 24 and res["droppedWithoutImages"] == 2
        assert "images/s" in err and "bytes/s" in err
    # a re-run of a committed embed shard is skipped
    rc, res, err = run_job(["embed", "--source", f"{root}/data/samples.parquet", "--embedder", str(model), "--batch-size",
                        "4", "--concepts", f"{root}/data/concepts.parquet", "--shard", "1", "--shards", "2",
                        "--output", out], capsys)
    assert rc == 0 and res["skipped"] is True, err
    part = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/embed/shards-00002/images/part-00000.parquet")))
    assert part.column_names == ["id", "images", "conversations", "embedding"]
    assert part.column("images").to_pylist()[0] == [f"file://{tmp_path}/data/img/1.png", f"file://{tmp_path}/data/img/2.png"]
    cpart = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/embed/shards-00002/concepts/part-00001.parquet")))
    assert cpart.num_rows == 5 and len(cpart.column("embedding")[0]) == 24

    for shard in range(2):
        rc, res, err = run_job(["retrieve", "--source", f"{root}/data/samples.parquet", "--concepts",
                            f"{root}/data/concepts.parquet", "--top-k", "2", "--embedded", "--shard", str(shard),
                            "--shards", "2", "--output", out], capsys)
        assert rc == 0, err
    rc, res, err = run_job(["balance", "--method", "MetaCLIP", "--target-samples", "10", "--seed", "3", "--shards", "2",
                        "--output", out], capsys)
    assert rc == 0, err
    s = res["stats"]
    assert s["inputSamples"] == n - 4 and 0 < s["selectedSamples"] <= n - 4
    sel = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/selected/part-00000.parquet")))
    assert sel.column_names == ["id", "images", "conversations", "concepts"]
    assert all(x.startswith(f"file://{tmp_path}/data/img/") for l in sel.column("images").to_pylist() for x in l)


def test_a_missing_model_or_an_uncommitted_embed_shard_is_bad_input(tmp_path, capsys):
    root = f"file://{tmp_path}"
    write_parquet(f"{root}/s.parquet", pa.table({"id": ["a"], "images": [["x.png"]]}))
    write_parquet(f"{root}/c.parquet", pa.table({"text": ["t"]}))
    rc, res, err = run_job(["embed", "--source", f"{root}/s.parquet", "--embedder", str(tmp_path / "nope"),
                        "--concepts", f"{root}/c.parquet", "--shard", "0", "--output", f"{root}/out"], capsys)
    assert rc == 2 and "source embedder: model directory" in err
    rc, res, err = run_job(["retrieve", "--source", f"{root}/s.parquet", "--concepts", f"{root}/c.parquet",
                        "--embedded", "--shard", "0", "--output", f"{root}/out"], capsys)
    assert rc == 2 and "embed shard 0 of 1 is not committed" in err
