"""Instruction tuning of a causal LM on Alpaca-format data: "instruct/alpaca".

Each record becomes alpaca_prompt(instruction, input) (tasks.instruct.alpaca_template) followed by its output
and EOS; the loss covers the output tokens and EOS only (labels -100 on the prompt and on padding).

Cutoff (`train.max_length`, tokens, BOS included): the prompt is always kept whole and the response
is cut at its end to fit (EOS is then cut too); a record whose prompt alone leaves no room for one
response token is dropped. `fit_to_length` applies the rule to the train and dev slices once the
tokenizer is known, and both counts (dropped, truncated) go into the run's metrics.json (`data`).

Splits: the usable records (tasks.instruct.instruct_data: empty outputs skipped, placeholder inputs removed,
both counted) are split once into a held-out dev slice of `dev_size` records, drawn with `dev_seed`
(not the run's seed: every method and seed is judged on the same slice and never trains on it), and
the train records, the rest; `max_train_samples` draws a seeded subset of those with the run's seed.

Evaluation during training is the loss on the dev slice, no generation: "loss" (mean negative
log-likelihood per response token, EOS included, over the whole slice), "perplexity" = exp(loss), and
the main metric "neg_loss" = -loss. The loop and the protocol pick the best checkpoint (and an lr)
by the largest main metric, so the lowest dev loss wins without any special case anywhere.
"""
from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F

from salora.errors import SaloraError
from tasks.instruct.alpaca_template import alpaca_prompt
from tasks.base import Example, Task, register, subset
from tasks.instruct.instruct_data import InstructData, find_instruct_file, read_hub_dataset, read_instruct_file
from tasks.prompts import IGNORE_INDEX, collate_features, continuation_ids, prompt_ids

# Task options (task_options.<name>) and their defaults.
INSTRUCT_DEFAULTS: dict[str, Any] = {
    "dev_size": 200,  # records held out for dev loss and checkpoint selection
    "dev_seed": 0,  # draws the dev slice; fixed across runs so every run is judged on the same records
    "hub_dataset": None,  # e.g. "tatsu-lab/alpaca": read the hub's train split instead of a local file
}


def response_features(tokenizer: Any, prompt: str, response: str, max_length: int) -> dict[str, list[int]] | None:
    """input_ids / attention_mask / labels of one record, unpadded; None when the prompt alone leaves no
    room for a response token within `max_length`. Labels are -100 on the prompt; the response and EOS
    are cut at their end to fit."""
    p = prompt_ids(tokenizer, prompt)
    if len(p) >= max_length:
        return None
    r = (continuation_ids(tokenizer, prompt, response) + [tokenizer.eos_token_id])[:max_length - len(p)]
    return {"input_ids": p + r, "attention_mask": [1] * (len(p) + len(r)), "labels": [IGNORE_INDEX] * len(p) + r}


def record_prompt(example: Example) -> str:
    return alpaca_prompt(example["instruction"], example["input"])


class InstructTask(Task):
    name = "instruct/alpaca"
    main_metric = "neg_loss"  # higher is better: -(dev loss)
    eval_split = "dev"

    def __init__(self, **options: Any) -> None:
        for key, value in INSTRUCT_DEFAULTS.items():
            setattr(self, key, value)
        self.data: InstructData | None = None
        self.length_counts: dict[str, dict[str, int]] = {}
        self.configure(**options)

    def configure(self, **options: Any) -> "InstructTask":
        for key, value in options.items():
            if key not in INSTRUCT_DEFAULTS:
                raise SaloraError(f"task {self.name} has no option '{key}' (options: {', '.join(INSTRUCT_DEFAULTS)})")
            setattr(self, key, value)
        for key in ("dev_size", "dev_seed"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "dev_size" else 0):
                raise SaloraError(f"task_options.{key} must be an integer >= {1 if key == 'dev_size' else 0}, "
                                  f"got {value!r}")
        if self.hub_dataset is not None and not isinstance(self.hub_dataset, str):
            raise SaloraError(f"task_options.hub_dataset must be a dataset id, got {self.hub_dataset!r}")
        return self

    # ------------------------------------------------------------------------------- data
    def load_splits(self, data_dir: str | None, *, max_train_samples: int | None = None,
                    seed: int = 0) -> dict[str, list[Example]]:
        self.data = read_hub_dataset(self.hub_dataset) if self.hub_dataset else read_instruct_file(
            find_instruct_file(data_dir))
        records = self.data.records
        if len(records) <= self.dev_size:
            raise SaloraError(f"{self.data.source}: {len(records)} usable records, but dev_size is {self.dev_size}: "
                              "lower task_options.dev_size to leave records to train on")
        held_out = set(random.Random(self.dev_seed).sample(range(len(records)), self.dev_size))
        dev = [r for i, r in enumerate(records) if i in held_out]
        train = [r for i, r in enumerate(records) if i not in held_out]
        return {"train": subset(train, max_train_samples, seed), "dev": dev}

    def fit_to_length(self, tokenizer: Any, examples: list[Example], max_length: int, split: str) -> list[Example]:
        """The examples whose prompt fits within `max_length` with room for a response token; counts
        the dropped ones and those whose response is cut."""
        kept, truncated = [], 0
        for ex in examples:
            features = response_features(tokenizer, record_prompt(ex), ex["output"], max_length)
            if features is None:
                continue
            kept.append(ex)
            truncated += features["labels"][-1] != tokenizer.eos_token_id
        self.length_counts[split] = {"examples": len(kept), "dropped_long_prompt": len(examples) - len(kept),
                                     "truncated_response": truncated}
        return kept

    def data_summary(self) -> dict[str, Any]:
        if self.data is None:
            return {}
        return {**self.data.summary(), "dev_size": self.dev_size, "dev_seed": self.dev_seed,
                "after_cutoff": self.length_counts}

    # ------------------------------------------------------------------------------- model + batches
    def build_model(self, model_ref: str) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tasks.models import load_pretrained
        from tasks.style.style import prepare_tokenizer

        tokenizer = load_pretrained(AutoTokenizer, model_ref)
        if tokenizer.eos_token_id is None:
            raise SaloraError(f"{self.name}: the tokenizer of {model_ref} has no EOS token (it ends every response)")
        model = load_pretrained(AutoModelForCausalLM, model_ref, dtype=torch.float32)
        prepare_tokenizer(tokenizer, model)
        return model, tokenizer

    def collate(self, tokenizer: Any, examples: list[Example], max_length: int) -> dict[str, torch.Tensor]:
        """Response-masked LM batch, right-padded (pad positions: attention 0, label -100)."""
        return collate_features([self._features(tokenizer, ex, max_length) for ex in examples], _pad_id(tokenizer))

    def _features(self, tokenizer: Any, example: Example, max_length: int) -> dict[str, list[int]]:
        features = response_features(tokenizer, record_prompt(example), example["output"], max_length)
        if features is None:  # fit_to_length drops these before any batch is built
            raise SaloraError(f"{self.name}: record {example['index']}'s prompt does not fit max_length {max_length}")
        return features

    # ------------------------------------------------------------------------------- evaluation
    def predict(self, model: torch.nn.Module, tokenizer: Any, examples: list[Example], *, batch_size: int,
                max_length: int, device: torch.device) -> list[tuple[float, int]]:
        """(summed NLL, token count) of each example's response, in order. Batches are formed in length
        order, so little of the forward pass is padding."""
        features = [self._features(tokenizer, ex, max_length) for ex in examples]
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        out: list[tuple[float, int]] = [(0.0, 0)] * len(features)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate_features([features[i] for i in chunk], _pad_id(tokenizer))
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
            labels = batch["labels"][:, 1:].to(device)  # token t is predicted at position t - 1
            nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
                                  reduction="none")
            counts = (labels != IGNORE_INDEX).sum(dim=1)
            for i, total, count in zip(chunk, nll.sum(dim=1).tolist(), counts.tolist()):
                out[i] = (total, count)
        return out

    def score(self, examples: list[Example], predictions: list[tuple[float, int]]) -> dict[str, float]:
        """Token-weighted mean over the whole slice, so the number does not depend on the batching."""
        total = sum(nll for nll, _ in predictions)
        tokens = sum(count for _, count in predictions)
        if tokens == 0:
            raise SaloraError(f"{self.name}: the dev slice has no response token to score")
        loss = total / tokens
        return {"neg_loss": -loss, "loss": loss, "perplexity": math.exp(min(loss, 700.0))}


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


register("instruct/alpaca", InstructTask)
