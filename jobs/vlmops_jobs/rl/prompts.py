"""The prompt table (`spec.prompts.uri`): reading, checking, images, and the chat messages.

One file, JSONL (`.jsonl`/`.json`) or parquet (`.parquet`), one row per prompt:

    id          string, unique (default: the row number)
    prompt      the user turn; `<image>` marks where each image goes (default: images first)
    image       one image (path relative to the file's directory, or a URI), or `images`: a list
    answer      the reference answer (string or number)
    answerType  exact | numeric | multiple_choice (default exact): which reward scores it

Bad rows are refused before anything is generated (exit 2, naming the row and the field).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from vlmops_contract.rl_checks import ANSWER_TYPES

from ..common import image_refs, storage
from ..common.result import JobError
from .rewards import parse_number
from .templates import user_text

IMAGE_MARKER = "<image>"


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str
    answer: str
    answer_type: str = "exact"
    images: tuple[str, ...] = field(default_factory=tuple)  # as written: relative to the table's directory

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "images": list(self.images), "answer": self.answer,
                "answerType": self.answer_type}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "Prompt":
        return cls(d["id"], d["prompt"], d["answer"], d.get("answerType", "exact"), tuple(d.get("images") or ()))


def _rows(uri: str) -> list[dict[str, Any]]:
    if not storage.exists(uri):
        raise JobError(f"prompts uri: {uri} does not exist")
    data = storage.read_bytes(uri)
    if uri.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    if uri.endswith((".jsonl", ".json")):
        out = []
        for i, line in enumerate(data.decode().splitlines()):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise JobError(f"prompts uri: line {i + 1} of {uri} is not JSON ({e})") from None
        return out
    raise JobError(f"prompts uri: {uri} is neither .jsonl nor .parquet")


def read(uri: str) -> list[Prompt]:
    """Every prompt of the table, checked; JobError names the first bad row and field."""
    out, seen = [], set()
    for i, row in enumerate(_rows(uri)):
        pid = str(row.get("id") if row.get("id") is not None else i)
        where = f"prompts row {pid}"
        if pid in seen:
            raise JobError(f"{where}: id appears more than once in {uri}")
        seen.add(pid)
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise JobError(f"{where}: prompt must be a non-empty string")
        if row.get("answer") is None or str(row["answer"]).strip() == "":
            raise JobError(f"{where}: answer is missing")
        kind = row.get("answerType") or "exact"
        if kind not in ANSWER_TYPES:
            raise JobError(f"{where}: answerType {kind!r} is not one of {', '.join(ANSWER_TYPES)}")
        answer = str(row["answer"]).strip()
        if kind == "numeric" and parse_number(answer) is None:
            raise JobError(f"{where}: answer {answer!r} is not a number (answerType numeric)")
        images = row.get("images") if row.get("images") is not None else ([row["image"]] if row.get("image") else [])
        if not isinstance(images, (list, tuple)) or not all(isinstance(x, str) and x for x in images):
            raise JobError(f"{where}: image/images must be a path or URI, or a list of them")
        markers = row["prompt"].count(IMAGE_MARKER)
        if markers not in (0, len(images)):
            raise JobError(f"{where}: prompt has {markers} {IMAGE_MARKER} markers for {len(images)} images")
        out.append(Prompt(pid, row["prompt"], answer, kind, tuple(images)))
    if not out:
        raise JobError(f"prompts uri: {uri} holds no prompts")
    return out


def image_root(uri: str) -> str:
    """Where relative image references in the table point: the table's directory."""
    return image_refs.source_root(uri)


def load_images(root: str, refs: tuple[str, ...]) -> list[Any]:
    from PIL import Image

    out = []
    for ref in refs:
        uri = image_refs.resolve(root, ref)
        try:
            img = Image.open(io.BytesIO(storage.read_bytes(uri)))
            out.append(img.convert("RGB"))
        except (OSError, ValueError) as e:
            raise JobError(f"prompts image: cannot read {uri} ({type(e).__name__}: {e})") from None
    return out


def messages(p: Prompt, template: str) -> list[dict[str, Any]]:
    """The user turn as structured chat content: image parts where the prompt's `<image>` markers
    are (or first), text parts between (the template's instruction appended)."""
    text = user_text(p.prompt, template)
    if not p.images:
        return [{"role": "user", "content": [{"type": "text", "text": text}]}]
    if IMAGE_MARKER not in text:
        text = IMAGE_MARKER * len(p.images) + "\n" + text
    parts: list[dict[str, Any]] = []
    for k, piece in enumerate(text.split(IMAGE_MARKER)):
        if k:
            parts.append({"type": "image"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return [{"role": "user", "content": parts}]
