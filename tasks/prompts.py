"""The one prompt format of the style tasks, and prompt-masked causal-LM features.

Prompt (Yelp and GYAFC alike; `text` is the source, or its content after marker deletion):

    Input: <text>
    Words: <word group>; <word group>        (only when the task gives words: Yelp delete-and-retrieve)
    Style: <target style name>
    Output:

and the model continues with " <rewrite>" followed by EOS. The style line comes after the text so that
left-truncating an over-long prompt drops the start of the text, never the instruction.

Yelp's content marks each run of deleted words with `SLOT` ("the food was ___ ."): the rewrite then
reads as "fill the slots in the target style", not "continue the sentence", which is what a model
shown only the remaining words learned (it copied them). "___" occurs nowhere in the Yelp data and is
one token in SmolLM2's tokenizer (" ___"). The Words line lists the style words to put into the
slots: in training the sentence's own deleted words, at test time words retrieved for the target
style (tasks.style.retrieval).

Training and generation tokenise the prompt identically (`prompt_ids`), so the model is trained on
exactly the prefix it later generates from. The loss covers only the rewrite tokens and EOS.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

PROMPT_TEMPLATE = "Input: {text}\n{words}Style: {style}\nOutput:"
WORD_SEPARATOR = "; "  # between word groups; ";" is rare inside Yelp's tokenised sentences
SLOT = "___"  # marks a run of deleted words in Yelp's content
IGNORE_INDEX = -100  # label value that torch's cross-entropy (and HF models) skip


def build_prompt(text: str, style_name: str, words: Sequence[str] | None = None) -> str:
    """The prompt; `words` (a list, possibly empty) adds the Words line, None leaves it out."""
    line = "" if words is None else ("Words: " + WORD_SEPARATOR.join(words)).rstrip() + "\n"
    return PROMPT_TEMPLATE.format(text=text, words=line, style=style_name)


def _adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS in front of a text by itself (Llama does, GPT-2 does not)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def prompt_ids(tokenizer: Any, prompt: str, max_length: int | None = None) -> list[int]:
    """Token ids of a prompt: BOS (if the tokenizer uses one) + text, never EOS.

    If longer than `max_length`, the start is dropped (the style instruction sits at the end).
    """
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if _adds_bos(tokenizer):
        ids = [tokenizer.bos_token_id] + ids
    if max_length is not None and len(ids) > max_length:
        ids = ids[len(ids) - max_length:]
    return ids


def continuation_ids(tokenizer: Any, prompt: str, continuation: str) -> list[int]:
    """Ids of `continuation` as they come out when tokenised right after the prompt.

    Tokenising prompt + continuation in one go and cutting off the prompt's ids keeps word-boundary
    tokens (e.g. BPE's leading-space tokens) exactly as a single pass produces them. If the prompt's
    ids are not a prefix (a merge across the boundary), the continuation is tokenised alone instead,
    so the prompt's ids stay those generation starts from.
    """
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
    if full[:len(head)] == head:
        return full[len(head):]
    return tokenizer(continuation, add_special_tokens=False)["input_ids"]


def _target_ids(tokenizer: Any, prompt: str, target: str) -> list[int]:
    """Ids of " <target>" after the style prompt (which ends in "Output:")."""
    return continuation_ids(tokenizer, prompt, " " + target)


def build_training_features(tokenizer: Any, prompt: str, target: str, max_length: int) -> dict[str, list[int]]:
    """input_ids / attention_mask / labels for one example, unpadded.

    labels are -100 on every prompt token, so the loss is the NLL of the rewrite tokens and EOS only.
    When prompt + rewrite + EOS exceed `max_length`, the rewrite keeps at least half of the budget
    (cut at its end) and the prompt is left-truncated to the rest, so every example keeps some loss.
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    p = prompt_ids(tokenizer, prompt)
    t = _target_ids(tokenizer, prompt, target) + [tokenizer.eos_token_id]
    if len(p) + len(t) > max_length:
        keep_t = min(len(t), max(max_length // 2, max_length - len(p)))
        t = t[:keep_t]
        p = p[len(p) - (max_length - keep_t):]
    return {
        "input_ids": p + t,
        "attention_mask": [1] * (len(p) + len(t)),
        "labels": [IGNORE_INDEX] * len(p) + t,
    }


def collate_features(features: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: pad positions get attention 0 and label -100.

    Right padding keeps every sequence at positions 0..n-1, the same positions generation gives the
    prompt (it derives positions from the attention mask under left padding).
    """
    width = max(len(f["input_ids"]) for f in features)
    batch = {key: [] for key in ("input_ids", "attention_mask", "labels")}
    for f in features:
        pad = width - len(f["input_ids"])
        batch["input_ids"].append(f["input_ids"] + [pad_id] * pad)
        batch["attention_mask"].append(f["attention_mask"] + [0] * pad)
        batch["labels"].append(f["labels"] + [IGNORE_INDEX] * pad)
    return {key: torch.tensor(rows, dtype=torch.long) for key, rows in batch.items()}
