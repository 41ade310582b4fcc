"""Style classification ("stylecls/yelp", "stylecls/gyafc"): the scorer behind style accuracy.

A binary single-sentence classifier over the style task's own data: label = style index (Yelp
0 negative / 1 positive, GYAFC 0 informal / 1 formal). Training sentences come from the style
task's training data (`classifier_data`: Yelp's whole pool as read, GYAFC's train split),
held-out accuracy from its dev split (Yelp sentiment.dev.*, GYAFC tune/), so the classifier never
sees a test sentence. It is the evaluation classifier: only the final test scoring uses it, never
training, checkpoint selection or decoding (Yelp selects with tasks.style.selection's word-count
classifier instead). Batching, model head and accuracy are SST-2's
(a single-sentence binary GLUE task), reused rather than rewritten.
"""
from __future__ import annotations

from typing import Any

import torch

from tasks.base import Example, Task, register
from tasks.classification.glue import GLUE_SPECS, GlueTask
from tasks.style.style_data import subsample


class StyleClassifierTask(Task):
    main_metric = "accuracy"

    def __init__(self, style: str):
        self.name = f"stylecls/{style}"
        import tasks  # the registry (this module is one of its built-in task modules)

        self.style_task = tasks.get(f"style/{style}")
        self._binary = GlueTask(GLUE_SPECS["sst2"])

    def configure(self, **options: Any) -> "StyleClassifierTask":
        """Data options of the style task (e.g. train_pool, domain)."""
        self.style_task.configure(**options)
        return self

    def load_splits(self, data_dir: str | None, *, max_train_samples: int | None = None,
                    seed: int = 0) -> dict[str, list[Example]]:
        train, dev = self.style_task.classifier_data(data_dir, seed=seed)
        return {"train": subsample(_labelled(train), max_train_samples, seed), "dev": _labelled(dev)}

    def build_model(self, model_ref: str) -> tuple[torch.nn.Module, Any]:
        return self._binary.build_model(model_ref)

    def collate(self, tokenizer: Any, examples: list[Example], max_length: int) -> dict[str, torch.Tensor]:
        return self._binary.collate(tokenizer, examples, max_length)

    def evaluate(self, model, tokenizer, examples, *, batch_size, max_length, device) -> dict[str, float]:
        return self.score(examples, self.predict(model, tokenizer, examples, batch_size=batch_size,
                                                 max_length=max_length, device=device))

    def predict(self, model, tokenizer, examples, *, batch_size, max_length, device) -> list[int]:
        return self._binary.predict(model, tokenizer, examples, batch_size=batch_size,
                                    max_length=max_length, device=device)

    def score(self, examples, preds) -> dict[str, float]:
        return {"accuracy": self._binary.score(examples, preds)["accuracy"]}


def _labelled(examples: list[Example]) -> list[Example]:
    """Unique (sentence, style) pairs: sources and, for parallel data, their targets."""
    seen: dict[tuple[str, int], None] = {}
    for ex in examples:
        seen[(ex["source"], ex["source_style"])] = None
        if ex.get("target") and ex["target_style"] != ex["source_style"]:
            seen[(ex["target"], ex["target_style"])] = None
    return [{"text_a": s, "text_b": None, "label": y} for s, y in seen]


register("stylecls/yelp", lambda: StyleClassifierTask("yelp"))
register("stylecls/gyafc", lambda: StyleClassifierTask("gyafc"))
