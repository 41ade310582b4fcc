"""What every task on a sequence-classification head shares (GLUE, your own data): the model, the batches
and the raw scores.

Examples are `{"text_a": str, "text_b": str | None, "label": int | float}`: one text or a pair, and a class
id (classification) or a float (regression, one output). A subclass reads its data and scores predictions;
it sets `num_labels` and `is_regression`, and may name its classes (`head_labels`) so the saved model
config says which output is which.
"""
from __future__ import annotations

from typing import Any

import torch

from salora.errors import SaloraError
from tasks.base import Example, Task
from tasks.models import load_marking_new, load_pretrained


class SequenceClassificationTask(Task):
    num_labels: int
    is_regression: bool

    def head_labels(self) -> list[str] | None:
        """Class names in id order for the model config's id2label (None: transformers' LABEL_0, ...)."""
        return None

    # ----------------------------------------------------------------- model
    def build_model(self, model_ref: str) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = load_pretrained(AutoTokenizer, model_ref)
        missing_pad = tokenizer.pad_token is None
        if missing_pad:
            # Decoder-only models (GPT-2, Llama) ship without a pad token; eos is the usual stand-in.
            if tokenizer.eos_token is None:
                raise SaloraError(f"tokenizer of '{model_ref}' has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        problem = "regression" if self.is_regression else "single_label_classification"
        names = self.head_labels()
        named = {} if names is None else {"id2label": dict(enumerate(names)),
                                          "label2id": {n: i for i, n in enumerate(names)}}
        # ignore_mismatched_sizes: a checkpoint fine-tuned for another number of labels gets a fresh head
        # of this task's size (the head always trains) instead of failing to load
        # the head, and any other module the checkpoint lacks (DeBERTa-v3's pooler), is marked for the
        # methods to train and save (tasks.models.load_marking_new)
        model = load_marking_new(AutoModelForSequenceClassification, model_ref, num_labels=self.num_labels,
                                 problem_type=problem, ignore_mismatched_sizes=True, **named)
        if missing_pad or getattr(model.config, "pad_token_id", None) is None:
            # Sequence-classification heads of decoder models find the last real token via this id.
            model.config.pad_token_id = tokenizer.pad_token_id
        return model, tokenizer

    def collate(self, tokenizer: Any, examples: list[Example], max_length: int) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("collate needs at least one example")
        text_a = [ex["text_a"] for ex in examples]
        has_b = [ex.get("text_b") is not None for ex in examples]
        if any(has_b) and not all(has_b):
            raise ValueError(f"{self.name}: examples mix single sentences and sentence pairs")
        text_b = [ex["text_b"] for ex in examples] if all(has_b) else None
        enc = tokenizer(text_a, text_b, truncation=True, max_length=max_length,
                        padding="longest", return_tensors="pt")
        batch = dict(enc)
        dtype = torch.float32 if self.is_regression else torch.long
        batch["labels"] = torch.tensor([ex["label"] for ex in examples], dtype=dtype)
        return batch

    # ------------------------------------------------------------ prediction
    def logits(self, model: torch.nn.Module, tokenizer: Any, examples: list[Example], *,
               batch_size: int, max_length: int, device: torch.device) -> torch.Tensor:
        """The head's outputs for every example, in order: (examples, num_labels), float32 on the CPU."""
        if not examples:
            raise SaloraError(f"{self.name}: no examples to evaluate")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # Batches of similar length, longest first: a batch pads to its longest example, and in input
        # order QNLI's dev set (5,463 pairs, cut at 128 tokens) pads to about twice its real tokens. The
        # attention mask keeps each example's outputs independent of its batch mates.
        order = self.length_order(tokenizer, examples, max_length)
        chunks = []
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = self.collate(tokenizer, [examples[i] for i in order[start:start + batch_size]], max_length)
                batch.pop("labels")  # gold labels come from `examples`; no loss needed here
                out = model(**{k: v.to(device) for k, v in batch.items()}).logits
                chunks.append(out.reshape(len(out), -1).float().cpu())
        sorted_logits = torch.cat(chunks)
        logits = torch.empty_like(sorted_logits)
        logits[torch.tensor(order)] = sorted_logits  # back to the examples' order
        return logits

    @staticmethod
    def length_order(tokenizer: Any, examples: list[Example], max_length: int) -> list[int]:
        """Example indices from the longest tokenized example to the shortest (ties in input order)."""
        text_a = [ex["text_a"] for ex in examples]
        pairs = all(ex.get("text_b") is not None for ex in examples)  # a mix fails in collate, with its message
        text_b = [ex["text_b"] for ex in examples] if pairs else None
        ids = tokenizer(text_a, text_b, truncation=True, max_length=max_length)["input_ids"]
        return sorted(range(len(examples)), key=lambda i: -len(ids[i]))

    def predict(self, model: torch.nn.Module, tokenizer: Any, examples: list[Example], *,
                batch_size: int, max_length: int, device: torch.device) -> list[float | int]:
        """One prediction per example (class id, or the regression value); no metrics.

        Split from `score` so several processes can each predict a shard and gather them.
        """
        logits = self.logits(model, tokenizer, examples, batch_size=batch_size, max_length=max_length,
                             device=device)
        return logits[:, 0].tolist() if self.is_regression else logits.argmax(dim=-1).tolist()
