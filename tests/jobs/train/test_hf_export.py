"""The HF export of the tiny preset: same logits as megatron, loadable with a processor."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from pathlib import Path  # noqa: E402

from vlmops_jobs.train.data import ChatTokenizer, PackedShards, StepLoader  # noqa: E402


def test_hf_export_gives_megatrons_logits_and_loads_with_a_processor(small, tmp_path, one_rank):
    from transformers import LlavaForConditionalGeneration

    from vlmops_jobs.train.hf_export import gather_full_state, megatron_input_to_hf, to_hf
    from vlmops_jobs.train.model import Parallel, build_model, logits
    from vlmops_contract.model_shapes import PRESETS, padded_vocab

    tok = ChatTokenizer(small["tokenizer"])
    preset = PRESETS["tiny"]
    vocab = padded_vocab(tok.vocab_size)
    model = build_model(preset, vocab, tok.image, Parallel()).eval()
    with torch.no_grad():  # random init leaves norms at 1 / biases at 0: perturb so the check sees them
        for n, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    sh = PackedShards(small["uri"])
    mb = StepLoader(sh, tok, seed=0, global_batch=1, dp_size=1, dp_rank=0, tile=28,
                    max_len=4096).step_batches(0)[0]
    # first sub-sample only (HF LLaVA has no packed-sequence mask)
    seg0 = int((mb["segment_ids"] == 0).sum())
    ids = mb["input_ids"][0]
    n_img_tok = 0
    cut = 0
    tiles_used = 0
    k = 0
    for t in ids.tolist():
        if cut + n_img_tok >= seg0:
            break
        if t == tok.image:
            n = int(mb["num_image_tiles"][k])
            n_img_tok += n - 1
            tiles_used += n
            k += 1
        cut += 1
    ids = ids[:cut][None]
    nt = mb["num_image_tiles"][:k]
    images = mb["images"][:tiles_used]
    ml = logits(model, ids, images, nt)
    full = gather_full_state(model)
    hf = to_hf(full, preset, vocab, tok.image)
    hf.save_pretrained(tmp_path / "hf")
    hf2 = LlavaForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    hf_ids = megatron_input_to_hf(ids, nt, tok.image, 1)
    assert hf_ids.shape[1] == ml.shape[1]
    with torch.no_grad():
        kw = {"pixel_values": images} if k else {}
        hl = hf2(input_ids=hf_ids, **kw).logits
    assert k >= 1, "the checked sequence should carry an image"
    assert (hl - ml).abs().max().item() < 1e-4, (hl - ml).abs().max().item()
    # The export carries a processor, so lmms-eval's llava_hf / AutoProcessor can drive it.
    import shutil

    from PIL import Image
    from transformers import AutoProcessor

    from vlmops_jobs.train.hf_export import save_processor

    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(small["tokenizer"]) / fn, tmp_path / "hf" / fn)
    save_processor(str(tmp_path / "hf"), hf2.config)
    proc = AutoProcessor.from_pretrained(tmp_path / "hf")
    inp = proc(images=[Image.new("RGB", (90, 60), (200, 10, 10))], text=["<image>\nWhat colour?"],
               return_tensors="pt")
    assert (inp["input_ids"] == tok.image).sum().item() == 1
    with torch.no_grad():
        assert hf2(**inp).logits.shape[1] == inp["input_ids"].shape[1]
