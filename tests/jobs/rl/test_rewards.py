"""Each rule-based reward on hand-written completions, in both templates and TRL's two completion
forms (plain strings and chat messages); rows of another answer type get None."""
from __future__ import annotations

import pytest

from vlmops_jobs.rl import rewards as r
from vlmops_jobs.rl.templates import ANSWER_ONLY, CHAIN_OF_THOUGHT, COT_INSTRUCTION, user_text


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def score(fn, completions, answers, types=None, template=ANSWER_ONLY):
    n = len(completions)
    return fn(completions, answer=answers, answer_type=types or ["exact"] * n, template=[template] * n)


def test_exact_match_ignores_case_space_quotes_and_trailing_punctuation():
    got = score(r.exact_match, ["Red", " red. ", '"RED"', "red\n", "reddish", "the red", ""], ["red"] * 7)
    assert got == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert score(r.exact_match, [chat("Blue!"), [{"role": "assistant", "content": [{"type": "text", "text": "blue"}]}]],
                 ["blue", "blue"]) == [1.0, 1.0]


def test_chain_of_thought_answers_after_the_reasoning():
    cot = ["<think>it is bright</think> red", "<think>hmm</think>\nAnswer: Red.", "I think red",
           "<think>red</think> blue", "reasoning... Answer: red"]
    assert score(r.exact_match, cot, ["red"] * 5, template=CHAIN_OF_THOUGHT) == [1.0, 1.0, 0.0, 0.0, 1.0]
    # the same text under answer-only is the whole completion
    assert score(r.exact_match, ["<think>x</think> red"], ["red"]) == [0.0]
    assert score(r.exact_match, ["so \\boxed{red}"], ["red"]) == [1.0]  # \boxed wins in both templates


def test_numeric_compares_the_last_number_not_its_spelling():
    comps = ["42", "42.0", "1,000", "The total is 3.5.", "50%", "3/4", "-2", "forty-two", "41.9999"]
    refs = ["42", "42", "1000", "3.50", "50", "0.75", "-2.0", "42", "42"]
    assert score(r.numeric, comps, refs, ["numeric"] * 9) == [1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert r.parse_number("no digits") is None and r.parse_number("1/0") is None


def test_multiple_choice_reads_the_option_letter():
    comps = ["B", "(B)", "B. the cat", "b", "The answer is B", "C", "A cat", "Answer: (b)"]
    assert score(r.multiple_choice, comps, ["B"] * 8, ["multiple_choice"] * 8) == [1, 1, 1, 1, 1, 0, 0, 1]
    assert r.choice_letter("(C)") == "C" and r.choice_letter("a cat") is None


def test_a_correctness_reward_scores_only_its_answer_type():
    comps, refs = ["red", "42", "B"], ["red", "42", "B"]
    types = ["exact", "numeric", "multiple_choice"]
    assert score(r.exact_match, comps, refs, types) == [1.0, None, None]
    assert score(r.numeric, comps, refs, types) == [None, 1.0, None]
    assert score(r.multiple_choice, comps, refs, types) == [None, None, 1.0]
    # summed as GRPO sums them: each row gets exactly its type's score
    assert r.total(["exact_match", "numeric", "multiple_choice"], ["red", "41", "B"], answer=refs,
                   answer_type=types, template=[ANSWER_ONLY] * 3) == [1.0, 0.0, 1.0]


def test_format_checks_the_templates_shape():
    only = ["red", "  red  ", "", "red\nbecause", "<think>x</think>red"]
    assert r.format_reward(only, template=[ANSWER_ONLY] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    cot = ["<think>bright</think> red", "<think>\nstep\n</think>\nred", "red", "<think>x</think>", "<think>x red"]
    assert r.format_reward(cot, template=[CHAIN_OF_THOUGHT] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert r.format_reward.__name__ == "format"  # TRL logs rewards/format/mean


def test_the_api_names_are_the_functions():
    from vlmops_contract.rl_checks import REWARDS

    assert [f.__name__ for f in r.by_name(REWARDS)] == list(REWARDS)
    with pytest.raises(KeyError):
        r.by_name(["bleu"])


def test_the_chain_of_thought_template_asks_for_the_shape_the_rewards_read():
    assert user_text("Q?", CHAIN_OF_THOUGHT) == "Q?" + COT_INSTRUCTION and user_text("Q?", ANSWER_ONLY) == "Q?"
    assert "<think>" in COT_INSTRUCTION
