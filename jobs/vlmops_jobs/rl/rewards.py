"""Rule-based rewards: plain functions with TRL's reward-function signature.

    reward(completions, answer, answer_type, template, **columns) -> list[float | None]

`completions` are what GRPOTrainer passes (strings, or chat messages `[{"role": "assistant",
"content": ...}]`); `answer`, `answer_type` and `template` are columns of the prompt rows. A
correctness reward scores only the rows of its answer type and returns None for the others (TRL
leaves None out of the sum), so one phase can list exact_match, numeric and multiple_choice over a
mixed prompt set. Every reward is 0 or 1. The selection step calls the same functions.

The final answer is read per template (`templates.py`): answer-only prompts answer with the whole
completion; chain-of-thought ones with what follows the last `</think>` (or `Answer:`); a
`\\boxed{x}` anywhere wins in both. No answer found scores 0.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

from vlmops_contract.rl_checks import REWARDS

from .templates import ANSWER_ONLY, CHAIN_OF_THOUGHT

RewardFn = Callable[..., list]

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_FRACTION = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)$")
_LETTER = re.compile(r"^\(?([A-Z])\)?(?=$|[\s.:)])")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*\(?([A-Za-z])\)?(?=$|[\s.:)])", re.I)
_COT = re.compile(r"\s*<think>.*?</think>\s*\S.*", re.S)


def completion_text(completion: Any) -> str:
    """The generated text of one completion as TRL hands it over (a string or chat messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else completion[-1]
        if isinstance(content, list):  # structured parts
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")
    return ""


def final_answer(text: str, template: str | None) -> str | None:
    """The answer a completion gives under its prompt's template (None: it gives none)."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    if (template or ANSWER_ONLY) == CHAIN_OF_THOUGHT:
        if "</think>" in text:
            text = text.rsplit("</think>", 1)[1]
        elif "Answer:" in text:
            text = text.rsplit("Answer:", 1)[1]
        else:
            return None
        text = text.strip()
        text = text[len("Answer:"):] if text.startswith("Answer:") else text
    text = text.strip()
    return text or None


def normalize(s: str) -> str:
    """Case, surrounding space/quotes and trailing punctuation do not count."""
    s = re.sub(r"\s+", " ", s.strip().lower())
    return s.strip(" \"'`").rstrip(".!?;:,").strip()


def parse_number(s: str) -> float | None:
    """The last number in `s` ("1,234", "-0.5", "3e-2", "50%", "3/4"), or None."""
    s = s.strip().rstrip("%").strip()
    if m := _FRACTION.match(s):
        den = float(m.group(2))
        return float(m.group(1)) / den if den else None
    found = _NUMBER.findall(s)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def choice_letter(s: str) -> str | None:
    """The option an answer names: "B", "(B)", "B.", "B) text", "the answer is b"; a lone letter in
    any case."""
    s = s.strip()
    if len(s) == 1 and s.isalpha():
        return s.upper()
    if m := _LETTER.match(s):
        return m.group(1)
    if m := _ANSWER_IS.search(s):
        return m.group(1).upper()
    return None


def _rows(completions: Sequence[Any], n: int, column: Sequence[Any] | None, default: Any) -> list[Any]:
    return list(column) if column is not None else [default] * n


def _correctness(kind: str, same: Callable[[str, str], bool]) -> RewardFn:
    def reward(completions: Sequence[Any], answer: Sequence[Any], answer_type: Sequence[Any] | None = None,
               template: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
        n = len(completions)
        types, templates = _rows(completions, n, answer_type, "exact"), _rows(completions, n, template, None)
        out: list[float | None] = []
        for c, ref, t, tpl in zip(completions, answer, types, templates):
            if (t or "exact") != kind:
                out.append(None)
                continue
            got = final_answer(completion_text(c), tpl)
            out.append(1.0 if got is not None and same(got, str(ref)) else 0.0)
        return out

    return reward


def _same_number(got: str, ref: str) -> bool:
    a, b = parse_number(got), parse_number(ref)
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _same_choice(got: str, ref: str) -> bool:
    a, b = choice_letter(got), choice_letter(ref)
    return a is not None and a == b


exact_match = _correctness("exact", lambda got, ref: normalize(got) == normalize(ref))
exact_match.__name__ = exact_match.__qualname__ = "exact_match"
exact_match.__doc__ = "1 when the normalised final answer equals the reference (rows of answer type exact)."

numeric = _correctness("numeric", _same_number)
numeric.__name__ = numeric.__qualname__ = "numeric"
numeric.__doc__ = "1 when the answer's last number equals the reference's (relative 1e-6; rows of type numeric)."

multiple_choice = _correctness("multiple_choice", _same_choice)
multiple_choice.__name__ = multiple_choice.__qualname__ = "multiple_choice"
multiple_choice.__doc__ = "1 when the chosen option letter is the reference's (rows of type multiple_choice)."


def format_reward(completions: Sequence[Any], template: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """1 when a completion has its template's shape: answer-only = one non-empty line without
    reasoning tags; chain-of-thought = `<think>...</think>` followed by an answer."""
    out = []
    for c, tpl in zip(completions, _rows(completions, len(completions), template, None)):
        text = completion_text(c)
        if (tpl or ANSWER_ONLY) == CHAIN_OF_THOUGHT:
            ok = bool(_COT.fullmatch(text))
        else:
            ok = bool(text.strip()) and "\n" not in text.strip() and "<think>" not in text
        out.append(1.0 if ok else 0.0)
    return out


format_reward.__name__ = format_reward.__qualname__ = "format"  # TRL logs rewards/<name>/mean

FUNCTIONS: dict[str, RewardFn] = {"exact_match": exact_match, "numeric": numeric,
                                  "multiple_choice": multiple_choice, "format": format_reward}
assert tuple(FUNCTIONS) == REWARDS  # the API's names are these functions


def by_name(names: Sequence[str]) -> list[RewardFn]:
    return [FUNCTIONS[n] for n in names]


def total(names: Sequence[str], completions: Sequence[Any], **columns: Any) -> list[float]:
    """Each completion's reward as GRPO sums it: the listed functions' values, None left out."""
    sums = [0.0] * len(completions)
    for fn in by_name(names):
        for i, v in enumerate(fn(completions, **columns)):
            if v is not None:
                sums[i] += float(v)
    return sums
