"""Unit checks of the training job: validation, LR schedule, loader, HF export parity (in-process, 1 rank)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from vlmops_jobs.common.result import JobError  # noqa: E402
from vlmops_jobs.train import trainer  # noqa: E402
from vlmops_jobs.train.data import ChatTokenizer, PackedShards, StepLoader, block_causal_mask  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_fixtures.packed import make_packed_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _args(*extra):
    return trainer.parse_args(["--data", "x", "--tokenizer", "y", "--train-iters", "10", *extra])


@pytest.mark.parametrize("extra,world,msg", [
    (["--tensor", "3"], 3, "tensor 3 does not divide language heads 4"),
    (["--tensor", "2"], 3, r"must be divisible by tensor\*pipeline\*context"),
    (["--pipeline", "2"], 2, "pipeline"),
    (["--micro-batch", "2"], 2, "spec.batch.micro: must be 1"),
    (["--sequence-parallel"], 1, "spec.parallelism.sequenceParallel"),
    (["--init-from", "hf://org/m"], 1, "spec.initFrom.huggingFace"),
    (["--global-batch", "3"], 2, "multiple of the data-parallel size"),
    (["--trainable", "projector,decoder"], 1, "trainable"),
])
def test_validation_before_any_process_group(extra, world, msg):
    with pytest.raises(JobError, match=msg):
        trainer.validate(_args(*extra), world)


def test_lr_schedule_warmup_cosine_min():
    a = _args("--lr", "1e-3", "--min-lr", "1e-4", "--warmup-fraction", "0.2")
    lrs = [trainer.lr_at(s, a) for s in range(10)]
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert all(x >= y for x, y in zip(lrs[1:], lrs[2:]))
    assert lrs[-1] > 1e-4 and trainer.lr_at(10, a) == pytest.approx(1e-4)


@pytest.fixture
def one_rank(monkeypatch):
    """A one-process gloo group with megatron's parallel state and RNG tracker, torn down after."""
    import socket

    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from vlmops_jobs.train import cpu_compat

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ps.initialize_model_parallel(1, 1)
        torch.manual_seed(0)
        cpu_compat.apply()
        cpu_compat.seed_rng(0)
        yield
    finally:
        ps.destroy_model_parallel()
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("u")
    return make_packed_dataset(f"file://{root}/packed", str(root / "tok"), n_samples=6, capacity=400, seed=1)


def test_loader_positions_masks_and_deterministic_order(small):
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


def test_missing_shards_exit_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'jobs'}:{REPO / 'operator'}", VLMOPS_TERMINATION_LOG=os.devnull)
    p = subprocess.run([sys.executable, "-m", "vlmops_jobs.train", "--data", f"file://{tmp_path}/none", "--tokenizer",
                        str(tmp_path), "--train-iters", "1"], env=env, capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: tokenizer")


def test_hf_export_matches_megatron_logits(small, tmp_path, one_rank):
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


def test_progress_json_and_prometheus_gauges(tmp_path):
    import socket
    import urllib.request

    from vlmops_jobs.common import storage
    from vlmops_jobs.train.progress import Progress

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = f"file://{tmp_path}/out"
    p = Progress(out, total_steps=4, metrics_port=port, every=2)
    p.update(1, 3.5, tokens=1000, samples=10, flops=1e12, dt=0.5, world=2, peak_tflops=1.0)
    assert not storage.exists(f"{out}/progress.json")  # every=2
    p.checkpoint = {"latest": "s3://b/ck/iter_0000002", "step": 2}
    p.update(2, 3.0, tokens=1000, samples=10, flops=1e12, dt=0.5, world=2, peak_tflops=1.0)
    doc = storage.read_json(f"{out}/progress.json")
    assert doc["step"] == 2 and doc["totalSteps"] == 4 and doc["loss"] == 3.0
    assert doc["tokensPerSecond"] == 2000.0 and doc["samplesPerSecond"] == 20.0 and doc["mfu"] == 1.0
    assert doc["checkpoint"]["step"] == 2
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name, value in (("vlmops_train_step", 2.0), ("vlmops_train_total_steps", 4.0), ("vlmops_train_loss", 3.0),
                        ("vlmops_train_tokens_per_second", 2000.0), ("vlmops_train_samples_per_second", 20.0),
                        ("vlmops_train_mfu", 1.0)):
        assert f"{name} {value}" in text, name


def test_image_tokens_equal_the_packers_for_tiled_and_tiny_models(small, one_rank):
    """One rule decides image tokens for packer and trainer: a 480x640 image is 17x23 = 391 tokens in
    the plan, and a tiled ViT (56px tiles, 14px patches, 2x2 merge: 4 tokens a tile) feeds the LLM
    exactly those 391 (padding cells dropped). On the tiny preset the trainer's composition gives
    the same loss as megatron's LLaVAModel forward."""
    import io
    import json

    from PIL import Image

    from vlmops_jobs.pack.lengths import image_tokens
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
