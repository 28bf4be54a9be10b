"""The loader (positions, masks, order) and the forward step's image tokens, in-process on one rank."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from vlmops_jobs.train.data import ChatTokenizer, PackedShards, StepLoader, block_causal_mask  # noqa: E402
from vlmops_contract.model_shapes import PRESETS  # noqa: E402


def test_loader_restarts_positions_per_sub_sample_and_orders_steps_deterministically(small):
    tok = ChatTokenizer(small["tokenizer"])
    sh = PackedShards(small["uri"])
    assert len(sh) == small["sequences"]
    mk = lambda r: StepLoader(sh, tok, seed=5, global_batch=2, dp_size=2, dp_rank=r, vision=PRESETS["tiny"].vision,
                              max_len=4096)
    l0, l1 = mk(0), mk(1)
    seen = [i for s in range(len(sh)) for i in (l0.indices(s) + l1.indices(s))][: len(sh)]
    assert sorted(seen) == list(range(len(sh)))  # first epoch is a permutation
    assert l0.indices(3) == mk(0).indices(3)
    mb = l0.step_batches(0)[0]
    S = mb["tokens"]
    assert mb["position_ids"].numel() == S == mb["segment_ids"].numel()
    # positions restart at 0 at every sub-sample boundary
    starts = (mb["position_ids"] == 0).nonzero().flatten().tolist()
    assert len(starts) == mb["samples"]
    grid = mb["image_grid_thw"]
    assert mb["pixel_values"].shape == (int(grid.prod(1).sum()), 3 * 14 * 14)
    merged = int(grid.prod(1).sum()) // 4
    assert S == mb["input_ids"].shape[1] - (mb["input_ids"] == tok.image).sum().item() + merged
    # loss only on assistant tokens: every masked target is inside an assistant turn
    assert 0 < mb["target_tokens"] < mb["input_ids"].shape[1]
    m = block_causal_mask(torch.tensor([0, 0, 1]))[0, 0]
    assert m.tolist() == [[False, True, True], [False, False, True], [True, True, False]]


@pytest.mark.parametrize("size", [(640, 480), (90, 60), (1000, 37), (3000, 2000), (28, 28)])
def test_image_tokens_equal_the_packers_and_the_release_processors(size):
    """One smart-resize rule for the packer, the trainer and the exported processor: an image feeds
    the LLM exactly the packer's `imageTokens`, from patches laid out as Qwen2-VL's processor does."""
    import io

    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    from vlmops_jobs.pack.token_lengths import image_tokens
    from vlmops_jobs.train.data import CLIP_MEAN, CLIP_STD, image_patches
    from vlmops_jobs.train.release_format import MAX_PIXELS, MIN_PIXELS

    w, h = size
    buf = io.BytesIO()
    Image.effect_noise((w, h), 60).convert("RGB").save(buf, format="PNG")
    patches, (t, rows, cols) = image_patches(buf.getvalue(), None)
    assert t * rows * cols // 4 == image_tokens(w, h) == patches.shape[0] // 4
    proc = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=1, min_pixels=MIN_PIXELS,
                                 max_pixels=MAX_PIXELS, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    out = proc(images=[Image.open(io.BytesIO(buf.getvalue())).convert("RGB")], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[t, rows, cols]]
    # same layout (merge-window order, channel-major patches); resampling filters differ by a few levels
    assert out["pixel_values"].shape == patches.shape
    assert (out["pixel_values"] - patches).abs().mean() < 0.05


def test_a_sub_sample_longer_than_the_model_is_counted_not_lost(small, one_rank):
    import io
    import json

    from PIL import Image

    from vlmops_jobs.pack.token_lengths import image_tokens
    from vlmops_jobs.train.data import build_microbatch
    from vlmops_jobs.train.model import Parallel, build_model, forward_step
    from vlmops_contract.model_shapes import PRESETS, padded_vocab

    tok = ChatTokenizer(small["tokenizer"])
    planned = image_tokens(640, 480)
    assert planned == 17 * 23
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(buf, format="PNG")
    conv = [{"role": "user", "content": "<image>\nWhat colour?"}, {"role": "assistant", "content": "green"}]
    ids, _ = tok.encode_conversation(conv)
    total = len(ids) - 1 + planned
    raw = {"json": json.dumps({"sequence": 0, "capacity": 4096, "samples": [
        {"id": "a", "conversations": conv, "images": ["img0.png"], "tokens": total,
         "imageTokens": [planned]}]}).encode(), "img0.png": buf.getvalue()}
    vision = PRESETS["tiny"].vision
    mb = build_microbatch(raw, tok, vision, 4096)
    assert mb["tokens"] == total and mb["segment_ids"].numel() == total
    model = build_model(PRESETS["tiny"], padded_vocab(tok.vocab_size), tok.image, Parallel()).eval()
    with torch.no_grad():
        ls, n = forward_step(model, mb, torch.device("cpu"))  # the mask is total x total: any other count fails
    assert torch.isfinite(ls) and n > 0
    two = json.loads(raw["json"])
    two["samples"] = two["samples"] * 2
    mb2 = build_microbatch({**raw, "json": json.dumps(two).encode()}, tok, vision, total + 5)
    assert mb2["samples"] == 1 and mb2["dropped_samples"] == 1


@pytest.mark.parametrize("qwen_vl", [False, True])
def test_packer_and_trainer_count_the_same_tokens_for_both_image_forms(tmp_path, qwen_vl):
    """`<image>` tokenizers and the released Qwen-VL form (`<|vision_start|><|image_pad|><|vision_end|>`):
    the packer's count of a conversation equals the trainer's, and the trainer's ids carry the form."""
    import json

    from PIL import Image

    from vlmops_jobs.common import synthetic
    from vlmops_jobs.common.image_tokens import QWEN_VL
    from vlmops_jobs.pack.token_lengths import ImageGeometry, TextCounter, count_tokens
    from vlmops_jobs.train.data import ChatTokenizer, build_microbatch

    tok_dir = synthetic.make_tokenizer(str(tmp_path / "tok"), qwen_vl=qwen_vl)
    sizes = [(90, 60), (300, 200)]
    for k, (w, h) in enumerate(sizes):
        Image.new("RGB", (w, h), (10 * k, 200, 30)).save(tmp_path / f"img{k}.png")
    conv = [{"role": "user", "content": "<image>\nand <image>\nWhat colour?"},
            {"role": "assistant", "content": "green and red"}]
    row = {"id": "a", "conversations": conv, "images": ["img0.png", "img1.png"]}
    counts = count_tokens([row], [str(tmp_path)], TextCounter(tok_dir), ImageGeometry(14, 2, 3136, 2_560_000), 2)
    tok = ChatTokenizer(tok_dir)
    ids, _ = tok.encode_conversation(conv)
    specials = {tok.tok.token_to_id(t) for t in QWEN_VL}
    assert (specials <= set(ids)) is qwen_vl and ids.count(tok.image) == 2
    raws = {f"img{k}.png": (tmp_path / f"img{k}.png").read_bytes() for k in range(2)}
    raw = {"json": json.dumps({"sequence": 0, "capacity": 4096, "samples": [
        {"id": "a", "conversations": conv, "images": list(raws), "tokens": int(counts.totals[0]),
         "imageTokens": counts.images[0]}]}).encode(), **raws}
    mb = build_microbatch(raw, tok, PRESETS["tiny"].vision, 4096)
    assert mb["tokens"] == int(counts.totals[0])
