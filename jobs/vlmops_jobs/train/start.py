"""Before any process group: the data, the tokenizer, and where training starts (own checkpoint >
`--init-from` > random init). Everything that can refuse the run (exit 2) on its inputs does it
here, so no rank waits in a collective for one that already gave up."""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from typing import Any

from vlmops_contract.model_shapes import Preset, padded_vocab

from ..common.result import JobError
from . import checkpoint as ckpt
from .data import ChatTokenizer, PackedShards


@dataclass(frozen=True)
class StartPoint:
    resume_from: str | None = None               # our own latest iteration dir: weights, optimizer, step, RNG
    resume_state: dict[str, Any] | None = None   # its train_state
    init_from: str | None = None                 # an iteration dir to take weights from (only when not resuming)
    init_from_hf: str | None = None              # a local release-format snapshot dir to import weights from
    init_from_hf_digest: str | None = None       # its identity, for lineage


@dataclass
class Plan:
    """The run as decided before any process group exists; every later phase reads it."""
    args: argparse.Namespace
    world: int
    rank: int
    preset: Preset
    dp: int
    trainable: tuple[str, ...]
    tok: ChatTokenizer
    shards: PackedShards
    vocab: int                       # padded to a multiple TP can split
    model_json: dict[str, Any]       # written with every checkpoint, compared before any load
    data_id: dict[str, Any]          # the packed dataset's digest and sequence length
    start: StartPoint = field(default_factory=StartPoint)
    attention: str = "local"         # resolved backend (trainer.validate)

    @property
    def parallel_json(self) -> dict[str, int]:
        return {"tensor": self.args.tensor, "pipeline": self.args.pipeline, "context": self.args.context}

    def resume_keys(self) -> dict[str, Any]:
        """What decides which data each step reads and which parameters train: a resume must keep
        all of it (tensor and data parallelism may change; the optimizer state is resharded)."""
        a = self.args
        return {"trainable": list(self.trainable), "seed": a.seed, "globalBatch": a.global_batch,
                "sequenceLength": self.data_id["sequenceLength"], "data": self.data_id["digest"],
                "pipeline": a.pipeline, "context": a.context}


def load_data(args: argparse.Namespace, world: int, rank: int, preset: Preset, dp: int,
              trainable: tuple[str, ...]) -> Plan:
    """Open the tokenizer and the packed shards and check they fit the model and the DP size."""
    tok = ChatTokenizer(args.tokenizer)
    shards = PackedShards(args.data)
    if dp > len(shards):
        raise JobError(f"data {args.data}: {len(shards)} packed sequences for {dp} data-parallel ranks")
    vocab = padded_vocab(preset.language.vocab_size or tok.vocab_size)
    if tok.vocab_size > vocab:
        raise JobError(f"tokenizer {args.tokenizer}: {tok.vocab_size} tokens > preset vocab {vocab}")
    model_json = {"preset": preset.name, "vocab": vocab, "imageTokenId": tok.image, "shapes": preset.to_json()}
    return Plan(args=args, world=world, rank=rank, preset=preset, dp=dp, trainable=trainable, tok=tok, shards=shards,
                vocab=vocab, model_json=model_json, data_id=shards.identity())


def choose_start(plan: Plan) -> StartPoint:
    """Resume from `--checkpoint-uri`'s latest, else take weights from `--init-from`, else random init;
    a checkpoint for another model, or a resume that would change the data, is refused."""
    args = plan.args
    it = ckpt.latest_iteration(args.checkpoint_uri) if args.checkpoint_uri else None
    if it:
        state = ckpt.read_train_state(it)
        _check_model_json(f"checkpoint {it}", ckpt.read_model_json(it), plan.model_json)
        _check_resume(it, state, plan.resume_keys())
        return StartPoint(resume_from=it, resume_state=state)
    if args.init_from and args.init_from.startswith(HF_SCHEME):
        return _hf_start(args.init_from, plan)
    if args.init_from:
        it, _ = ckpt.resolve(args.init_from)
        _check_model_json(f"init-from {args.init_from}", ckpt.read_model_json(it), plan.model_json)
        return StartPoint(init_from=it)
    return StartPoint()


HF_SCHEME = "hf://"


def _hf_start(ref: str, plan: Plan) -> StartPoint:
    """`hf://<dir | fsspec prefix | repo id>`: a snapshot in the release's format whose shapes are the
    stage's model (checked here, before any process group: exit 2 naming what differs)."""
    from . import release_format as rf

    local = resolve_snapshot(ref[len(HF_SCHEME):])
    try:
        with open(os.path.join(local, "config.json")) as f:
            cfg = json.load(f)
        got = rf.preset_from_hf_config(cfg)
    except (OSError, KeyError, ValueError) as e:
        raise JobError(f"init-from {ref}: not a LLaVA-OneVision-1.5 snapshot ({e})") from None
    if cfg.get("model_type") != rf.MODEL_TYPE:
        raise JobError(f"init-from {ref}: model_type {cfg.get('model_type')!r}, expected {rf.MODEL_TYPE!r}")
    diff = shape_differences(got, plan.preset)
    if diff:
        raise JobError(f"init-from {ref}: the snapshot's shapes differ from the stage's model: {'; '.join(diff)}")
    if got.language.vocab_size > plan.vocab:
        raise JobError(f"init-from {ref}: snapshot vocab {got.language.vocab_size} > the model's {plan.vocab}")
    return StartPoint(init_from_hf=local, init_from_hf_digest=rf.snapshot_digest(local))


def shape_differences(got: Preset, want: Preset) -> list[str]:
    """Shape fields (not training lengths or vocab padding) where two presets differ."""
    from dataclasses import asdict

    skip = {"max_sequence_length", "max_positions", "vocab_size"}
    out = []
    for part in ("vision", "language"):
        a, b = asdict(getattr(got, part)), asdict(getattr(want, part))
        out += [f"{part}.{k} {a[k]} (snapshot) != {b[k]} (model)" for k in a if k not in skip and a[k] != b[k]]
    return out


def resolve_snapshot(ref: str) -> str:
    """A local directory holding the snapshot: a path, a copy of an fsspec prefix (staged once per
    node), or a Hugging Face repo id looked up through the HF cache (downloaded when the hub is reachable)."""
    if ref.startswith("/") or ref.startswith("file://"):
        path = ref[len("file://"):] if ref.startswith("file://") else ref
        if not os.path.isdir(path):
            raise JobError(f"init-from hf://{ref}: no such directory")
        return path
    if "://" in ref:
        from .data import _local_copy

        try:
            return _local_copy(ref.rstrip("/"))
        except (OSError, FileNotFoundError) as e:
            raise JobError(f"init-from hf://{ref}: cannot read the snapshot ({e})") from None
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(ref, allow_patterns=["*.json", "*.safetensors", "*.py", "*.txt", "*.jinja"])
    except Exception as e:  # offline and not cached, no such repo, no access
        raise JobError(f"init-from hf://{ref}: not in the Hugging Face cache and not downloadable "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _check_model_json(what: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    for k in ("shapes", "vocab"):
        if got.get(k) != want.get(k):
            raise JobError(f"{what}: checkpoint is for preset {got.get('preset')} (vocab {got.get('vocab')}), "
                           f"incompatible with preset {want['preset']} (vocab {want['vocab']}): {k} differ")


_RESUME_KEY_NAMES = {"trainable": "trainable", "seed": "seed", "globalBatch": "batch.global",
                     "sequenceLength": "the packed dataset's sequenceLength", "data": "the packed dataset (digest)",
                     "pipeline": "parallelism.pipeline", "context": "parallelism.context"}


def _check_resume(it_uri: str, saved: dict[str, Any], want: dict[str, Any]) -> None:
    diff = [f"{_RESUME_KEY_NAMES[k]} {saved.get(k)!r} -> {v!r}" for k, v in want.items() if saved.get(k) != v]
    if diff:
        raise JobError(f"checkpoint {it_uri}: resuming would change {'; '.join(diff)} (the run would skip or "
                       "repeat data); keep them, or start a new stage with initFrom and a new checkpoint.uri")
