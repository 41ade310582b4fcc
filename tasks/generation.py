"""Batched, deterministic generation of rewrites from prompts.

Prompts are tokenised exactly as in training (`tasks.prompts.prompt_ids`), LEFT-padded so every prompt
ends at the last column and new tokens follow directly, and decoded with `model.generate` using the
KV cache and no sampling (greedy, or beam search with `num_beams` > 1). Prompts are batched in order
of token length, which wastes little compute on padding; results come back in the input order.

`banned_ids` gives each prompt token ids its rewrite may never contain (Yelp: the first tokens of the
source's deleted style words, so the model cannot put the source sentiment back); a LogitsProcessor
applies them row by row, so batching still changes nothing.

Zero-shot transfer (salora_cli.transfer.transfer) uses three more knobs: `options` (further GenerationConfig
fields, e.g. do_sample and its temperature / top-p / top-k), `stop_when` (a test on a prompt's text so
far that ends its row, or its beam, e.g. once the answer cut can no longer change: the rest would be
generated for nothing) and `clean` (None returns the decoded continuation as it is, for a cut that
needs more than the text).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from transformers import (GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria,
                          StoppingCriteriaList)

from tasks.prompts import prompt_ids


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def clean_generation(text: str) -> str:
    """The rewrite: the first line of the decoded continuation, stripped.

    Rewrites are single sentences; a model that misses EOS tends to start a new "Input:" block on the
    next line, which is not part of the answer.
    """
    return text.strip().split("\n", 1)[0].strip()


class RowBanProcessor(LogitsProcessor):
    """Sets the score of each row's banned token ids to -inf. Under beam search generate() repeats
    every prompt `num_beams` times in a row (repeat_interleave), so row r belongs to prompt r // beams."""

    def __init__(self, banned: Sequence[Sequence[int]], num_beams: int = 1) -> None:
        self.banned = [sorted(set(ids)) for ids in banned]
        self.num_beams = num_beams

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for prompt, ids in enumerate(self.banned):
            if ids:
                rows = slice(prompt * self.num_beams, (prompt + 1) * self.num_beams)
                scores[rows, ids] = -float("inf")
        return scores


class StopWhenDone(StoppingCriteria):
    """Ends a row (a beam, under beam search) once `done(prompt index, text after the prompt)` says so.
    generate() keeps each prompt's rows together (beams, and the candidates it ranks, in equal numbers),
    so row r of n belongs to prompt r * prompts // n of the batch."""

    def __init__(self, done: Callable[[int, str], bool], tokenizer: Any) -> None:
        self.done, self.tokenizer = done, tokenizer
        self.width, self.prompts = 0, []  # the batch's prompt columns and prompt indices (set per batch)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        rows = input_ids.shape[0]
        if input_ids.shape[1] <= self.width:
            return torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        texts = self.tokenizer.batch_decode(input_ids[:, self.width:], skip_special_tokens=True)
        flags = [self.done(self.prompts[r * len(self.prompts) // rows], t) for r, t in enumerate(texts)]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


def first_token_in_text(tokenizer: Any, word: str) -> int | None:
    """The id a word starts with when it follows a space inside running text (as in a rewrite):
    tokenised after a fixed prefix and read off behind it, so BPE's leading-space tokens and
    SentencePiece's "▁" come out as in the middle of a sentence."""
    head = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a " + word, add_special_tokens=False)["input_ids"]
    if full[:len(head)] == head and len(full) > len(head):
        return full[len(head)]
    alone = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    return alone[0] if alone else None


@torch.no_grad()
def generate_texts(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 16,
                   max_new_tokens: int = 64, num_beams: int = 1, max_prompt_length: int | None = None,
                   device: torch.device | str | None = None,
                   banned_ids: Sequence[Sequence[int]] | None = None, options: dict[str, Any] | None = None,
                   stop_when: Callable[[int, str], bool] | None = None,
                   clean: Callable[[str], str] | None = clean_generation) -> list[str]:
    """One cleaned rewrite per prompt, in the order of `prompts`; `banned_ids[i]`: token ids prompt i's
    rewrite may not contain; `options`: further GenerationConfig fields (they win over the defaults
    above); `stop_when(i, text)`: True ends prompt i's row (beam) with that text; `clean` None: the
    decoded continuation uncut."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if banned_ids is not None and len(banned_ids) != len(prompts):
        raise ValueError("banned_ids needs one list of ids per prompt")
    device = torch.device(device) if device is not None else _device_of(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # A fresh config, so a checkpoint's own generation_config.json (sampling, penalties) cannot leak in.
    fields = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams, use_cache=True,
                  pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    config = GenerationConfig(**{**fields, **(options or {})})
    encoded = [prompt_ids(tokenizer, p, max_prompt_length) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    outputs: list[str] = [""] * len(encoded)
    stopper = StopWhenDone(stop_when, tokenizer) if stop_when is not None else None
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            seq = encoded[i]
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        processors = LogitsProcessorList()
        if banned_ids is not None and any(banned_ids[i] for i in chunk):
            processors.append(RowBanProcessor([banned_ids[i] for i in chunk], config.num_beams))
        stopping = StoppingCriteriaList()
        if stopper is not None:
            stopper.width, stopper.prompts = width, list(chunk)
            stopping.append(stopper)
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                             generation_config=config, logits_processor=processors, stopping_criteria=stopping)
        new_tokens = out[:, width:].tolist()
        for row, i in enumerate(chunk):
            text = tokenizer.decode(new_tokens[row], skip_special_tokens=True)
            outputs[i] = clean(text) if clean is not None else text
    return outputs
