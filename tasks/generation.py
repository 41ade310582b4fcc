"""Batched, deterministic generation of rewrites from prompts.

Prompts are tokenised exactly as in training (`tasks.prompts.prompt_ids`), LEFT-padded so every prompt
ends at the last column and new tokens follow directly, and decoded with `model.generate` using the
KV cache and no sampling (greedy, or beam search with `num_beams` > 1). Prompts are batched in order
of token length, which wastes little compute on padding; results come back in the input order.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import GenerationConfig

from tasks.prompts import prompt_ids


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def clean_generation(text: str) -> str:
    """The rewrite: the first line of the decoded continuation, stripped.

    Rewrites are single sentences; a model that misses EOS tends to start a new "Input:" block on the
    next line, which is not part of the answer.
    """
    return text.strip().split("\n", 1)[0].strip()


@torch.no_grad()
def generate_texts(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 16,
                   max_new_tokens: int = 64, num_beams: int = 1, max_prompt_length: int | None = None,
                   device: torch.device | str | None = None) -> list[str]:
    """One cleaned rewrite per prompt, in the order of `prompts`."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    device = torch.device(device) if device is not None else _device_of(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # A fresh config, so a checkpoint's own generation_config.json (sampling, penalties) cannot leak in.
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams, use_cache=True,
        pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    encoded = [prompt_ids(tokenizer, p, max_prompt_length) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    outputs: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            seq = encoded[i]
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                             generation_config=config)
        new_tokens = out[:, width:].tolist()
        for row, i in enumerate(chunk):
            outputs[i] = clean_generation(tokenizer.decode(new_tokens[row], skip_special_tokens=True))
    return outputs
