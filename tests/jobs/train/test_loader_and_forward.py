"""The loader (positions, masks, order) and the forward step's image tokens, in-process on one rank."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from vlmops_jobs.train.data import ChatTokenizer, PackedShards, StepLoader, block_causal_mask  # noqa: E402


def test_loader_restarts_positions_per_sub_sample_and_orders_steps_deterministically(small):
    tok = ChatTokenizer(small["tokenizer"])
    sh = PackedShards(small["uri"])
    assert len(sh) == small["sequences"]
    mk = lambda r: StepLoader(sh, tok, seed=5, global_batch=2, dp_size=2, dp_rank=r, tile=28,
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
    assert mb["images"].shape[0] == int(mb["num_image_tiles"].sum())
    assert S == mb["input_ids"].shape[1] - (mb["input_ids"] == tok.image).sum().item() + mb["images"].shape[0]
    # loss only on assistant tokens: every masked target is inside an assistant turn
    assert 0 < mb["target_tokens"] < mb["input_ids"].shape[1]
    m = block_causal_mask(torch.tensor([0, 0, 1]))[0, 0]
    assert m.tolist() == [[False, True, True], [False, False, True], [True, True, False]]


def test_image_tokens_equal_the_packers_for_tiled_and_tiny_models(small, one_rank):
    """One rule decides image tokens for packer and trainer: a 480x640 image is 17x23 = 391 tokens in
    the plan, and a tiled ViT (56px tiles, 14px patches, 2x2 merge: 4 tokens a tile) feeds the LLM
    exactly those 391 (padding cells dropped). On the tiny preset the trainer's composition gives
    the same loss as megatron's LLaVAModel forward."""
    import io
    import json

    from PIL import Image

    from vlmops_jobs.pack.token_lengths import image_tokens
    from vlmops_jobs.train.data import block_causal_mask, build_microbatch
    from vlmops_jobs.train.model import Parallel, build_model, forward_step
    from vlmops_contract.model_shapes import PRESETS, Preset, VisionShape, padded_vocab

    tok = ChatTokenizer(small["tokenizer"])
    vocab = padded_vocab(tok.vocab_size)
    cpu = torch.device("cpu")

    # tiny: the trainer's composition == LLaVAModel.forward on a real packed sequence
    tiny = build_model(PRESETS["tiny"], vocab, tok.image, Parallel()).eval()
    mb = build_microbatch(PackedShards(small["uri"]).read(0), tok, 28, 4096)
    assert mb["images"].shape[0] >= 1
    with torch.no_grad():
        ours, n = forward_step(tiny, mb, cpu)
        from vlmops_jobs.train.model import set_positions

        set_positions(tiny, mb["position_ids"])
        out, lm = tiny(images=mb["images"], input_ids=mb["input_ids"], position_ids=None,
                       attention_mask=block_causal_mask(mb["segment_ids"]), labels=mb["labels"],
                       loss_mask=mb["loss_mask"], num_image_tiles=mb["num_image_tiles"],
                       sound_clips=torch.zeros(0))
        theirs = (out.float() * lm.float()).sum()
    assert n == lm.float().sum()
    assert torch.allclose(ours, theirs, rtol=1e-5), (float(ours), float(theirs))

    # tiled vision tower: exactly the packer's tokens for a 480x640 image
    planned = image_tokens(640, 480)
    assert planned == 17 * 23
    tiled = Preset(name="tiled-test", vision=VisionShape(num_layers=1, hidden_size=32, num_heads=2,
                                                         ffn_hidden_size=64, patch=14, tile=56,
                                                         pixel_shuffle=True),
                   language=PRESETS["tiny"].language, projector_ffn=64, hf_exportable=False)
    assert tiled.vision.tokens_per_tile == 4
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(buf, format="PNG")
    conv = [{"role": "user", "content": "<image>\nWhat colour?"}, {"role": "assistant", "content": "green"}]
    ids, _ = tok.encode_conversation(conv)
    total = len(ids) - 1 + planned
    raw = {"json": json.dumps({"sequence": 0, "capacity": 4096, "samples": [
        {"id": "a", "conversations": conv, "images": ["img0.png"], "tokens": total,
         "imageTokens": [planned]}]}).encode(), "img0.png": buf.getvalue()}
    mb = build_microbatch(raw, tok, 56, 4096)
    assert mb["tokens"] == total and mb["segment_ids"].numel() == total
    assert mb["images"].shape[0] == 9 * 12  # ceil(17*28/56) x ceil(23*28/56) tiles, padded
    model = build_model(tiled, vocab, tok.image, Parallel()).eval()
    with torch.no_grad():
        ls, n = forward_step(model, mb, cpu)  # the mask is total x total: any other count fails here
    assert torch.isfinite(ls) and n > 0
    # a sub-sample longer than the model's max sequence length is counted, not silently lost
    two = json.loads(raw["json"])
    two["samples"] = two["samples"] * 2
    mb2 = build_microbatch({**raw, "json": json.dumps(two).encode()}, tok, 56, total + 5)
    assert mb2["samples"] == 1 and mb2["dropped_samples"] == 1
