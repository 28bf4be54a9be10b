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
    exact = 1.0 if _norm(pred) == _norm(target) else 0.0
    p, t = _number(pred), _number(target)
    if t is None:
        relaxed = exact
    elif p is None:
        relaxed = 0.0
    else:
        relaxed = 1.0 if abs(p - t) <= 0.05 * max(abs(t), 1e-9) else 0.0
    return {"exact_match": exact, "relaxed_accuracy": relaxed, "answer_chars": float(len(pred))}


def process_results_crash(doc, results):
    raise ValueError("scoring failed on purpose (test)")
