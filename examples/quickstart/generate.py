"""Generate the quickstart's synthetic multimodal data, offline and deterministic.

Writes under --out (a path or fsspec URI; the pipeline YAMLs expect <storage>/quickstart/data):
  pool/samples.parquet + pool/images/   sample table with precomputed image embeddings
  pool/concepts.parquet                 concept vocabulary with embeddings (Zipf-distributed use)
  tokenizer/                            a tiny HF tokenizer with a ChatML template
  eval-tasks/                           a custom lmms-eval task over local images
  rl/prompts.jsonl + rl/images/         the RL stage's prompts: the colour question with exact answers
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from vlmops_jobs.common.synthetic import COLOUR_QUESTION, COLOURS, make_samples, make_tokenizer

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--colour-fraction", type=float, default=0.5,
                   help="share of samples that ask the eval task's question (what the tiny model can learn)")
    args = p.parse_args(argv)
    out = Path(args.out.removeprefix("file://"))
    marker = out / "generated.json"
    want = {"samples": args.samples, "seed": args.seed, "colourFraction": args.colour_fraction, "version": 4}  # bump when generators change
    if marker.exists() and json.loads(marker.read_text()) == want:
        print(f"quickstart data already in {out}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    make_tokenizer(str(out / "tokenizer"))
    info = make_samples(str(out / "pool"), args.samples, seed=args.seed, with_embeddings=64, n_concepts=48,
                        image_sizes=[(56, 56), (84, 56), (112, 84), (56, 112), (140, 112)],
                        colour_fraction=args.colour_fraction)
    tasks = out / "eval-tasks"
    if tasks.exists():
        shutil.rmtree(tasks)
    shutil.copytree(HERE / "eval-task", tasks)
    _eval_data(tasks / "data", args.seed)
    _rl_prompts(out / "rl", args.seed)
    marker.write_text(json.dumps(want))
    print(f"wrote {info['n']} samples ({info['images']} images), tokenizer and eval task under {out}")
    return 0


def _eval_data(d: Path, seed: int) -> None:
    """A handful of images with one solid colour each; the question asks for the colour."""
    import numpy as np
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    colours = COLOURS  # the same colours (and question) as the training samples that teach the task
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(8):
        name, rgb = list(colours.items())[i % len(colours)]
        size = int(rng.choice([56, 84, 112]))
        Image.new("RGB", (size, size), rgb).save(d / f"img{i}.png")
        rows.append({"id": i, "image": f"img{i}.png", "question": "What colour is the image?", "answer": name})
    (d / "colours.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rl_prompts(d: Path, seed: int, n: int = 16) -> None:
    """The RL stage's prompt table: the question the stages teach, on solid colours of sizes the
    training data did not have, with the colour's name as the exact-match answer."""
    import numpy as np
    from PIL import Image

    (d / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 7)
    rows = []
    for i in range(n):
        name, rgb = list(COLOURS.items())[i % len(COLOURS)]
        w, h = (int(x) for x in rng.choice([70, 98, 126, 154], size=2))
        Image.new("RGB", (w, h), rgb).save(d / "images" / f"q{i:02d}.png")
        rows.append({"id": f"q{i:02d}", "prompt": "<image>\n" + COLOUR_QUESTION, "image": f"images/q{i:02d}.png",
                     "answer": name, "answerType": "exact"})
    (d / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    raise SystemExit(main())
