"""The released LLaVA-OneVision-1.5 format: the trainer's megatron model and its export (loaded by
transformers through the modeling code the export ships) compute the same logits on packed images
of different native sizes; import(export(x)) is bit-identical; a TP=2 import equals TP=1; the
presets are the released models' sizes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from vlmops_jobs.train import release_format as rf  # noqa: E402
from vlmops_jobs.train.data import ChatTokenizer, PackedShards, build_microbatch  # noqa: E402
from vlmops_contract.model_shapes import PRESETS, padded_vocab  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
TINY = PRESETS["tiny"]


def _model(tok, seed: int):
    from vlmops_jobs.train import cpu_compat
    from vlmops_jobs.train.model import Parallel, build_model

    torch.manual_seed(seed)
    cpu_compat.seed_rng(seed)
    m = build_model(TINY, padded_vocab(tok.vocab_size), tok.image, Parallel()).eval()
    with torch.no_grad():  # random init leaves norms at 1 and biases at 0: perturb so the checks see them
        for n, p in m.named_parameters():
            if p.ndim == 1 or "class" in n:
                p.add_(0.1 * torch.randn_like(p))
    return m


def _sequence_with_two_sizes(small, tok):
    """A packed micro-batch in which one sub-sample holds two images of different native sizes."""
    sh = PackedShards(small["uri"])
    for i in range(len(sh)):
        mb = build_microbatch(sh.read(i), tok, TINY.vision, 4096)
        per = _images_per_segment(mb, tok)
        if any(len({tuple(g) for g in grids}) >= 2 for grids in per.values()):
            return mb
    raise AssertionError("the fixture dataset should hold a sample with two differently sized images")


def _images_per_segment(mb, tok) -> dict[int, list[list[int]]]:
    ids, seg = mb["input_ids"][0], mb["segment_ids"]
    grids = mb["image_grid_thw"].tolist()
    out: dict[int, list[list[int]]] = {}
    pos, k = 0, 0  # walk text ids, tracking the combined (expanded) position for the segment id
    for t in ids.tolist():
        s = int(seg[pos])
        if t == tok.image:
            out.setdefault(s, []).append(grids[k])
            pos += grids[k][0] * grids[k][1] * grids[k][2] // 4
            k += 1
        else:
            pos += 1
    return out


@pytest.fixture(scope="module")
def exported(small, tmp_path_factory):
    """The tiny model (random, perturbed) exported the way the trainer exports, plus its logits."""
    import socket

    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from vlmops_jobs.train import cpu_compat
    from vlmops_jobs.train.model import logits

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ps.initialize_model_parallel(1, 1)
        cpu_compat.apply()
        tok = ChatTokenizer(small["tokenizer"])
        model = _model(tok, seed=0)
        mb = _sequence_with_two_sizes(small, tok)
        root = tmp_path_factory.mktemp("release")
        files = rf.export(model, TINY, padded_vocab(tok.vocab_size), tok.image, tok.dir, f"file://{root}/hf")
        full = rf.gather_full_state(model)
        other = _model(tok, seed=1)  # another init: only the import can make it equal
        rf.load_into(other, rf.ReleaseReader(str(root / "hf")), TINY)
        reimported = rf.gather_full_state(other)
        sharded = rf.export(model, TINY, padded_vocab(tok.vocab_size), tok.image, None, f"file://{root}/sharded",
                            shard_bytes=40_000)  # many files + the index, as the released checkpoints
        third = _model(tok, seed=2)
        rf.load_into(third, rf.ReleaseReader(str(root / "sharded")), TINY)
        seq0 = build_microbatch(PackedShards(small["uri"]).read(0), tok, TINY.vision, TINY.language.max_sequence_length)
        result = {"dir": root / "hf", "files": files, "full": full, "logits": logits(model, mb)[0], "mb": mb,
               "tok": tok, "reimported": reimported, "reexport": rf.to_release(reimported, TINY),
               "root": root, "logits_seq0": logits(other, seq0)[0], "sharded": sharded,
               "from_sharded": rf.gather_full_state(third)}
    finally:  # torn down before the tests run: they may start their own process groups
        ps.destroy_model_parallel()
        dist.destroy_process_group()
    return result


def test_megatron_and_the_export_give_the_same_logits_on_packed_images_of_two_sizes(exported):
    from transformers import AutoModelForCausalLM

    d, mb, tok, ml = exported["dir"], exported["mb"], exported["tok"], exported["logits"]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == [rf.ARCHITECTURE] and cfg["model_type"] == "llavaonevision1_5"
    assert cfg["vision_config"]["model_type"] == "rice_vit" and cfg["auto_map"]["AutoModelForCausalLM"]
    hf = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True, dtype=torch.float32).eval()
    assert type(hf).__name__ == rf.ARCHITECTURE
    # megatron ran the whole packed sequence (block-diagonal); HF runs each sub-sample on its own
    ids, seg, grid, pix = mb["input_ids"][0], mb["segment_ids"], mb["image_grid_thw"], mb["pixel_values"]
    per_img = (grid.prod(1) // 4).tolist()
    expanded, k = [], 0
    for t in ids.tolist():
        expanded += [t] * per_img[k] if t == tok.image else [t]
        k += t == tok.image
    expanded = torch.tensor(expanded)
    assert expanded.numel() == ml.shape[0]
    img, px, worst, two_sizes = 0, 0, 0.0, False
    for s in seg.unique().tolist():
        rows = (seg == s).nonzero().flatten()
        a, b = int(rows[0]), int(rows[-1]) + 1
        n_tok, imgs = int((expanded[a:b] == tok.image).sum()), []
        while n_tok > 0:
            imgs.append(img)
            n_tok -= per_img[img]
            img += 1
        kw = {}
        if imgs:
            n_px = int(grid[imgs].prod(1).sum())
            kw = {"pixel_values": pix[px: px + n_px], "image_grid_thw": grid[imgs]}
            px += n_px
            two_sizes |= len({tuple(grid[i].tolist()) for i in imgs}) >= 2
        with torch.no_grad():
            hl = hf(input_ids=expanded[a:b][None], **kw).logits[0]
        worst = max(worst, (hl - ml[a:b]).abs().max().item())
    assert two_sizes
    assert worst < 1e-4, worst


def test_the_export_loads_with_its_processor_and_generates(exported):
    """What lmms-eval's llava_onevision1_5 does: AutoProcessor + AutoModelForCausalLM (remote code),
    chat template with an image, generate."""
    from PIL import Image
    from transformers import AutoModelForCausalLM, AutoProcessor

    d = exported["dir"]
    proc = AutoProcessor.from_pretrained(d, trust_remote_code=True, max_pixels=200704, min_pixels=3136)
    hf = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True, dtype=torch.float32).eval()
    msg = [{"role": "user", "content": [{"type": "image", "image": None}, {"type": "text", "text": "what colour?"}]}]
    text = proc.apply_chat_template(msg, tokenize=False, add_generation_prompt=True)
    inp = proc(text=[text], images=[Image.new("RGB", (90, 60), (200, 10, 10))], return_tensors="pt")
    n_img = int((inp["input_ids"] == hf.config.image_token_id).sum())
    from vlmops_jobs.pack.token_lengths import image_tokens

    assert n_img == int(inp["image_grid_thw"].prod()) // 4 == image_tokens(90, 60) == 6  # 84x56 px: 3x2 cells
    out = hf.generate(**inp, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inp["input_ids"].shape[1] + 3


def test_import_of_an_export_is_bit_identical(exported):
    full, back = exported["full"], exported["reimported"]
    assert set(full) == set(back)
    assert all(torch.equal(full[k], back[k]) for k in full)
    from safetensors.torch import load_file

    on_disk = load_file(str(exported["dir"] / rf.WEIGHTS))
    assert set(on_disk) == set(exported["reexport"])
    assert all(torch.equal(on_disk[k], exported["reexport"][k]) for k in on_disk)
    assert rf.INDEX in exported["sharded"] and sum(f.endswith(".safetensors") for f in exported["sharded"]) > 3
    assert all(torch.equal(full[k], exported["from_sharded"][k]) for k in full)
    manifest = set(exported["files"])
    assert {"config.json", rf.WEIGHTS, *rf.CODE_FILES, "tokenizer.json"} <= manifest
    assert {"processor_config.json", "preprocessor_config.json"} & manifest  # the file name moved in transformers 5


def test_a_tp2_import_computes_what_tp1_computes(exported, small, tmp_path):
    out = tmp_path / "tp2.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "jobs"),
                                                        str(REPO / "tests" / "jobs")]), "OMP_NUM_THREADS": "1"}
    import socket

    with socket.socket() as s:  # a free port: another run of this suite may be on the machine
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", port,
           str(REPO / "tests/jobs/train/fixtures/import_probe.py"), "--snapshot", str(exported["dir"]),
           "--data", small["uri"], "--tokenizer", small["tokenizer"], "--out", str(out)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert p.returncode == 0, p.stderr[-4000:]
    got = torch.load(out)
    assert all(torch.equal(got["full"][k], exported["full"][k]) for k in exported["full"])
    ref = exported["logits_seq0"]
    assert (got["logits"][0] - ref).abs().max().item() < 1e-5


# The released checkpoints' sizes: README 4.7B / 8.5B; exact counts from their config shapes
# (ViT 302,914,592 + merger + Qwen3 LLM with an untied output layer, vocab 151936).
RELEASED = {"llava-ov-1.5-4b": (4.7e9, 4_741_610_528), "llava-ov-1.5-8b": (8.5e9, 8_527_214_624)}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_presets_build_on_the_meta_device_with_the_released_parameter_counts(name, one_rank):
    from vlmops_jobs.train.model import Parallel, build_model

    with torch.device("meta"):
        m = build_model(PRESETS[name], 151936, 151655, Parallel(initialize=False))
    n = sum(p.numel() for p in m.parameters())
    rounded, exact = RELEASED[name]
    assert abs(n - rounded) / rounded < 0.01
    assert n == exact == PRESETS[name].params()


def test_a_snapshot_of_another_shape_or_format_is_refused_before_any_process_group(exported, tmp_path):
    from types import SimpleNamespace

    from vlmops_jobs.common.result import JobError
    from vlmops_jobs.train.start import choose_start

    def start(ref, preset=TINY):
        args = SimpleNamespace(checkpoint_uri=None, init_from=ref)
        return choose_start(SimpleNamespace(args=args, preset=preset, vocab=padded_vocab(exported["tok"].vocab_size)))

    ok = start(f"hf://{exported['dir']}")
    assert ok.init_from_hf == str(exported["dir"]) and ok.init_from_hf_digest.startswith("sha256:")
    with pytest.raises(JobError, match=r"vision.num_layers 2 \(snapshot\) != 24 \(model\)"):
        start(f"hf://{exported['dir']}", PRESETS["llava-ov-1.5-4b"])
    with pytest.raises(JobError, match="no such directory"):
        start(f"hf://{tmp_path}/missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(JobError, match="not a LLaVA-OneVision-1.5 snapshot"):
        start(f"hf://{tmp_path}/other")
    with pytest.raises(JobError, match="not in the Hugging Face cache"):
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            start("hf://no-such-org/no-such-model")
        finally:
            os.environ.pop("HF_HUB_OFFLINE")


def test_the_exported_processor_marks_images_as_the_tokenizer_does(tmp_path):
    """With a Qwen-VL tokenizer (the released form) the processor's prompt carries
    <|vision_start|> <|image_pad|> x N <|vision_end|>, N = the packer's image tokens."""
    from PIL import Image
    from transformers import AutoProcessor

    from vlmops_jobs.common import synthetic
    from vlmops_jobs.common.image_tokens import QWEN_VL
    from vlmops_jobs.pack.token_lengths import image_tokens

    tok_dir = synthetic.make_tokenizer(str(tmp_path / "tok"), qwen_vl=True)
    rf.save_processor(str(tmp_path), tok_dir, TINY)
    proc = AutoProcessor.from_pretrained(tmp_path)
    msg = [{"role": "user", "content": [{"type": "image", "image": None}, {"type": "text", "text": "colour?"}]}]
    text = proc.apply_chat_template(msg, tokenize=False, add_generation_prompt=True)
    ids = proc(text=[text], images=[Image.new("RGB", (300, 200))], return_tensors="pt")["input_ids"][0].tolist()
    start, pad, end = (proc.tokenizer.convert_tokens_to_ids(t) for t in QWEN_VL)
    i = ids.index(start)
    n = image_tokens(300, 200)
    assert ids[i + 1: i + 1 + n] == [pad] * n and ids[i + 1 + n] == end


def test_every_load_of_the_export_computes_the_same_vision_features(exported):
    """from_pretrained builds the model on the meta device: a non-persistent buffer its
    _init_weights does not set stays whatever memory it is given. The vision RoPE's frequencies
    were such a buffer (garbage angles, sometimes NaN: GRPO's reference log-probs went NaN)."""
    from transformers import AutoModelForCausalLM

    grid, pix = exported["mb"]["image_grid_thw"][:1], exported["mb"]["pixel_values"]
    pix = pix[: int(grid.prod())]
    outs = []
    for fill in (float("nan"), 1e7, 0.0):
        junk = [torch.full((n,), fill) for n in range(1, 2048) for _ in range(2)]  # freed blocks, filled
        del junk
        hf = AutoModelForCausalLM.from_pretrained(exported["dir"], trust_remote_code=True, dtype=torch.float32)
        # transformers itself re-initialises the rotary embeddings' buffers; any other would be garbage
        assert all("rotary_emb" in n for n, _ in hf.named_non_persistent_buffers())
        with torch.no_grad():
            outs.append(hf.visual(pix, grid))
    assert torch.isfinite(outs[0]).all()
    assert all(torch.equal(outs[0], o) for o in outs[1:])
