"""Scoring for the tiny EvalSuite test tasks: exact match and a numeric (relaxed) metric."""
import os
import re

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def doc_to_visual(doc):
    with Image.open(os.path.join(HERE, "data", doc["image"])) as im:
        return [im.convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return f"{doc['question']}\nAnswer with a single word."


def _norm(s):
    return re.sub(r"\s+", " ", str(s).strip().lower()).strip(" .")


def _number(s):
    m = re.search(r"-?\d+(?:\.\d+)?", str(s))
    return float(m.group(0)) if m else None


def process_results(doc, results):
    pred = results[0] if results else ""
    target = str(doc["answer"])
    if target.isdigit():  # the count task declares no answer_chars metric
        return {"exact_match": 1.0 if _norm(pred) == _norm(target) else 0.0, "relaxed_accuracy": _relaxed(pred, target)}
    exact = 1.0 if _norm(pred) == _norm(target) else 0.0
    return {"exact_match": exact, "relaxed_accuracy": _relaxed(pred, target), "answer_chars": float(len(pred))}


def _relaxed(pred, target):
    """ChartQA-style numeric metric: within 5% of a numeric target (exact match otherwise)."""
    p, t = _number(pred), _number(target)
    if t is None:
        return 1.0 if _norm(pred) == _norm(target) else 0.0
    if p is None:
        return 0.0
    return 1.0 if abs(p - t) <= 0.05 * max(abs(t), 1e-9) else 0.0


def doc_to_visual_crash(doc):
    raise ValueError("image decoding failed on purpose (test)")
