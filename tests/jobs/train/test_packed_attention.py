"""Packed-sequence attention backends (jobs/vlmops_jobs/train/attention.py): boundaries from a shard,
sub-sample isolation on every backend this machine can run, the same logits and gradients as the
masked reference, MFU counted per sub-sample."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from vlmops_jobs.common.result import JobError  # noqa: E402
from vlmops_jobs.train import attention, attention_backends  # noqa: E402
from vlmops_jobs.train.data import ChatTokenizer, PackedShards, build_microbatch  # noqa: E402
from vlmops_contract.model_shapes import PRESETS, padded_vocab  # noqa: E402

TINY = PRESETS["tiny"]
REPO = Path(__file__).resolve().parents[3]
CPU = torch.device("cpu")
# every backend that computes on this machine: what trains here, plus forward-only ones (FlexAttention on a CPU)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RUNNABLE = attention.available(DEVICE) + attention.forward_only(DEVICE)


def _sequences(small, tok):
    sh = PackedShards(small["uri"])
    return [(json.loads(sh.read(i)["json"]), build_microbatch(sh.read(i), tok, TINY.vision, 4096))
            for i in range(len(sh))]


def _two_sample_mb(small, tok):
    for meta, mb in _sequences(small, tok):
        if mb["samples"] >= 2 and mb["image_grid_thw"].shape[0] >= 2:
            return mb
    raise AssertionError("the fixture should pack a sequence with two sub-samples and images")


def _model(tok, backend: str, state=None):
    from vlmops_jobs.train import cpu_compat
    from vlmops_jobs.train.model import Parallel, build_model

    torch.manual_seed(3)
    cpu_compat.seed_rng(3)
    m = build_model(TINY, padded_vocab(tok.vocab_size), tok.image, Parallel(attention=backend))
    if state is None:
        with torch.no_grad():  # random init leaves norms at 1 and biases at 0: perturb so every path matters
            for n, p in m.named_parameters():
                if p.ndim == 1 or "class" in n:
                    p.add_(0.1 * torch.randn_like(p))
    else:
        m.load_state_dict(state, strict=True)  # same parameter names whatever the backend
    return m


def test_boundaries_and_positions_from_a_shard_are_its_sub_samples(small):
    tok = ChatTokenizer(small["tokenizer"])
    for meta, mb in _sequences(small, tok):
        planned = [s["tokens"] for s in meta["samples"]]  # the packer's per-sample lengths
        assert mb["dropped_samples"] == 0
        lengths = attention.lengths_from_segments(mb["segment_ids"])
        assert lengths == planned
        p = attention.packed_params(lengths, CPU)
        cu = [0]
        for n in planned:
            cu.append(cu[-1] + n)
        assert p.cu_seqlens_q.tolist() == cu and p.cu_seqlens_q.dtype == torch.int32
        assert p.max_seqlen_q == max(planned) and p.qkv_format == "sbhd"
        # positions restart at every boundary and count up to the sub-sample's length
        assert mb["position_ids"].tolist() == [i for n in planned for i in range(n)]
    assert attention.lengths_from_segments(torch.tensor([4, 4, 4, 0, 0, 9])) == [3, 2, 1]
    with pytest.raises(ValueError):
        attention.packed_params([3, 0], CPU)


def test_backend_resolution_refuses_what_the_device_cannot_run():
    assert attention.resolve("auto", "cpu") == "local"
    assert attention.resolve("sdpa", "cpu") == "sdpa"
    assert attention.resolve("auto", "cuda") in ("te", "varlen")
    assert attention.resolve("auto", "cuda", half=False) == "sdpa"  # fp32: no flash kernels
    with pytest.raises(JobError, match="cannot run on cuda in fp32"):
        attention.resolve("varlen", "cuda", half=False)
    for bad, device in (("varlen", "cpu"), ("te", "cpu"), ("flex", "cpu"), ("nope", "cpu")):
        with pytest.raises(JobError) as e:
            attention.resolve(bad, device)
        assert repr(bad) in str(e.value)
    assert attention.resolve("flex", "cpu", training=False) == "flex"


@pytest.mark.parametrize("backend", RUNNABLE)
def test_changing_one_sub_sample_leaves_the_others_logits_unchanged(small, one_rank, backend):
    from vlmops_jobs.train.model import logits

    tok = ChatTokenizer(small["tokenizer"])
    mb = _two_sample_mb(small, tok)
    ref_model = _model(tok, "local").eval()
    model = _model(tok, backend, ref_model.state_dict()).eval()
    for tower in (model.language_model, model.vision_model):
        core = tower.decoder.layers[0].self_attention.core_attention
        assert getattr(core, "backend", "local") == backend  # the backend under test is the one computing
    base = logits(model, mb)[0]
    seg = mb["segment_ids"]
    # sample A = segment 0: other text and other pixels for its images; B = everything after it
    a_text = (mb["input_ids"][0] != tok.image).nonzero().flatten()[:3]
    changed = dict(mb, input_ids=mb["input_ids"].clone(), pixel_values=mb["pixel_values"].clone())
    changed["input_ids"][0, a_text] = (changed["input_ids"][0, a_text] + 7) % 50 + 10
    first_image = int(mb["image_grid_thw"][0].prod())
    changed["pixel_values"][:first_image] += 0.5
    after = logits(model, changed)[0]
    a, b = seg == seg[0], seg != seg[0]
    assert (after[a] - base[a]).abs().max() > 1e-3  # the change is visible where it should be
    assert (after[b] - base[b]).abs().max() < 1e-5, backend
    # and the backend computes what the masked reference computes
    assert (base - logits(ref_model, mb)[0]).abs().max() < 1e-4, backend


@pytest.mark.parametrize("fmt", ["sbhd", "thd"])
def test_training_gradients_equal_the_masked_reference(small, one_rank, monkeypatch, fmt):
    """sdpa trains on a CPU through the same megatron path the GPU backends use; THD is the format
    Transformer Engine gets (megatron's THD RoPE over whole-sequence angles, as positions restart)."""
    from vlmops_jobs.train.model import forward_step

    if fmt == "thd":
        monkeypatch.setattr(attention_backends, "THD_BACKENDS", {"te", "sdpa"})
    tok = ChatTokenizer(small["tokenizer"])
    mb = _two_sample_mb(small, tok)
    ref = _model(tok, "local")
    packed = _model(tok, "sdpa", ref.state_dict())
    grads = []
    for m in (ref, packed):
        ls, n = forward_step(m, mb, CPU)
        (ls / n).backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
        grads[-1]["loss"] = (ls / n).detach()
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for k in grads[0]:
        g0, g1 = grads[0][k], grads[1][k]
        assert (g0 - g1).abs().max() <= 1e-5 + 1e-4 * g0.abs().max(), k
    assert any(k.startswith("vision_model.decoder") and grads[0][k].abs().max() > 0 for k in grads[0])


def test_recompute_with_packed_attention_gives_the_same_gradients_on_a_cpu_too(small, one_rank):
    from vlmops_jobs.train import cpu_compat
    from vlmops_jobs.train.model import Parallel, build_model, forward_step

    tok = ChatTokenizer(small["tokenizer"])
    mb = _two_sample_mb(small, tok)
    out = []
    for recompute in ("none", "selective", "full"):
        torch.manual_seed(3)
        cpu_compat.seed_rng(3)
        m = build_model(TINY, padded_vocab(tok.vocab_size), tok.image, Parallel(recompute=recompute,
                                                                                attention="sdpa"))
        ls, n = forward_step(m, mb, CPU)
        (ls / n).backward()
        out.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    assert torch.equal(out[0], out[1])  # selective: only core attention is recomputed
    # full: whole layers are recomputed; gradients accumulate in another order (float rounding)
    assert (out[0] - out[2]).abs().max() <= 1e-6 * out[0].abs().max()


def test_mfu_counts_attention_per_sub_sample(small):
    from vlmops_jobs.train.flops import microbatch_flops, train_flops

    tok = ChatTokenizer(small["tokenizer"])
    mb = _two_sample_mb(small, tok)
    vocab = padded_vocab(tok.vocab_size)
    lengths = attention.lengths_from_segments(mb["segment_ids"])
    S = mb["tokens"]
    patches = [int(g.prod()) for g in mb["image_grid_thw"]]
    got = microbatch_flops(TINY, vocab, [mb])
    assert got == train_flops(TINY, vocab, S, patches, lengths)
    whole = train_flops(TINY, vocab, S, patches, [S])
    L = TINY.language
    per_pair = 3 * 2 * 2 * L.num_layers * L.num_heads * L.head_dim / 2
    assert whole - got == pytest.approx(per_pair * (S * S - sum(n * n for n in lengths)))


def test_the_gpu_benchmark_runs_its_cpu_smoke_mode(tmp_path):
    """benchmarks/gpu_attention.py measures on a GPU; its --smoke run keeps it from rotting here."""
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'jobs'}:{REPO / 'operator'}", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_attention.py"), "--smoke", "--out",
                        str(tmp_path / "t.md")], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert {r.get("attention") for r in rows if "seq" in r} == set(attention.available("cpu"))
    iso = rows[-1]["isolation"]
    assert set(iso) == set(RUNNABLE) and all(r["holds"] for r in iso.values())
    assert "| tiny | 256 | sdpa |" in (tmp_path / "t.md").read_text()
