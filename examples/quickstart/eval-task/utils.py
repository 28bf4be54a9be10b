"""Scoring for the quickstart colour task."""
import os
import re

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def doc_to_visual(doc):
    with Image.open(os.path.join(HERE, "data", doc["image"])) as im:
        return [im.convert("RGB")]


def _norm(s):
    return re.sub(r"\s+", " ", str(s).strip().lower()).strip(" .")


def process_results(doc, results):
    pred = results[0] if results else ""
    return {"exact_match": 1.0 if _norm(pred) == _norm(doc["answer"]) else 0.0, "answer_chars": float(len(pred))}
