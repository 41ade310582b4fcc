"""The Alpaca prompt template (Taori et al. 2023), shared by instruction tuning (tasks.instruct.instruct) and
zero-shot transfer: a model is prompted at test time exactly as it was trained.

Two forms: with an input (the instruction plus the text it applies to) and without one. The prompt
ends with "### Response:\n"; the model's answer follows directly, then EOS.
"""
from __future__ import annotations

PREAMBLE_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                       "context. Write a response that appropriately completes the request.")
PREAMBLE_NO_INPUT = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
RESPONSE_HEADER = "### Response:\n"


def alpaca_prompt(instruction: str, input: str | None = None) -> str:  # noqa: A002 - Alpaca's field name
    """The prompt for one record; an input that is None, empty or only whitespace gives the form without
    an input section. Nothing is stripped or rewritten inside the fields."""
    if input is not None and input.strip():
        return (f"{PREAMBLE_WITH_INPUT}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n"
                f"{RESPONSE_HEADER}")
    return f"{PREAMBLE_NO_INPUT}\n\n### Instruction:\n{instruction}\n\n{RESPONSE_HEADER}"
