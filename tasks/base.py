"""The Task protocol: everything the training loop needs from a task, and nothing about the method.

A task owns its data (reading splits from the hub or a local layout), turns examples into model
batches (with a `labels` entry, so `model(**batch).loss` is the task loss), builds its model (a plain
transformers model with the right head), and evaluates predictions into metrics.
Adding a task is one module that implements this protocol and calls `register`.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import torch

from salora_cli.errors import SaloraError

Example = dict[str, Any]


@runtime_checkable
class Task(Protocol):
    name: str  # registry key, e.g. "glue/sst2" or "style/yelp"
    main_metric: str  # higher is better; picks the best checkpoint
    eval_split: str  # the split evaluated during training ("dev", "test", ...)

    def load_splits(self, data_dir: str | None, *, max_train_samples: int | None = None,
                    seed: int = 0) -> dict[str, list[Example]]:
        """Return {"train": [...], <eval splits>: [...]}; raise SaloraError on bad data."""

    def build_model(self, model_ref: str) -> tuple[torch.nn.Module, Any]:
        """Return (model, tokenizer) for a hub id, local folder or offline alias."""

    def collate(self, tokenizer: Any, examples: list[Example], max_length: int) -> dict[str, torch.Tensor]:
        """Tokenise a list of examples into a batch that includes `labels`."""

    def evaluate(self, model: torch.nn.Module, tokenizer: Any, examples: list[Example], *,
                 batch_size: int, max_length: int, device: torch.device) -> dict[str, float]:
        """Metrics of `model` on `examples` (model is in eval mode when called).

        Tasks may also split this into `predict(model, tokenizer, examples, *, batch_size,
        max_length, device) -> list` and `score(examples, predictions) -> dict`: the loop then
        shards evaluation over processes and gathers the predictions before scoring.
        """


_REGISTRY: dict[str, Callable[[], Task]] = {}


def register(name: str, factory: Callable[[], Task]) -> None:
    _REGISTRY[name] = factory


def _load_builtin() -> None:
    # Importing the modules registers their tasks.
    import tasks.glue  # noqa: F401
    import tasks.style  # noqa: F401
    import tasks.style_classifier  # noqa: F401


def task_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get(name: str) -> Task:
    _load_builtin()
    if name not in _REGISTRY:
        raise SaloraError(f"unknown task '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]()


def single_class(preds: list) -> Any | None:
    """The one class every prediction falls in, or None when there are two or more.

    A classifier that always answers the majority class can still score well (MRPC: 68.4 accuracy,
    81.2 F1), so such an evaluation is flagged rather than reported as a result.
    """
    classes = set(preds)
    return next(iter(classes)) if len(preds) > 1 and len(classes) == 1 else None


def degenerate_flag(task: Any) -> dict:
    """{"degenerate": True, "predicted_class": name} for the task's last scored evaluation when every
    prediction was one class; {} otherwise (and for tasks that do not classify)."""
    name = getattr(task, "last_single_class", None)
    return {} if name is None else {"degenerate": True, "predicted_class": name}
