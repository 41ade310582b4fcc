"""The Alpaca prompt template (Taori et al. 2023), with and without an input field."""
from __future__ import annotations


def alpaca_prompt(instruction: str, input: str | None = None) -> str:
    """The Alpaca prompt for `instruction` (and `input`, when given and not empty), ending where the
    response starts."""
    if input:
        return ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                f"### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
    return ("Below is an instruction that describes a task. Write a response that appropriately completes "
            f"the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
