"""Prompt templates of a phase: what the user turn asks for, and how the answer is read back.

answerOnly: the prompt as written (it asks for the answer; the completion is the answer).
chainOfThought: the prompt plus `COT_INSTRUCTION`; the completion reasons inside
`<think> </think>` and answers after the closing tag (`rewards.final_answer`).
"""
ANSWER_ONLY = "answerOnly"
CHAIN_OF_THOUGHT = "chainOfThought"
COT_INSTRUCTION = ("\nThink step by step inside <think> </think> tags, then give only the final answer "
                   "after the closing tag.")


def user_text(prompt: str, template: str) -> str:
    return prompt + COT_INSTRUCTION if template == CHAIN_OF_THOUGHT else prompt
