"""The Task base class: everything the training loop needs from a task, and nothing about the method.

A task owns its data (reading splits from the hub or a local layout), turns examples into model
batches (with a `labels` entry, so `model(**batch).loss` is the task loss), builds its model (a plain
transformers model with the right head), and evaluates predictions into metrics.
Adding a task is one module with a `Task` subclass that calls `register`.
"""
from __future__ import annotations

import random
from typing import Any, Callable

import torch

from salora.errors import SaloraError

Example = dict[str, Any]


class Task:
    """Base class of every task. Required: the three attributes and load_splits, build_model,
    collate, predict, score. Everything else has a default that a task overrides when it needs to.
    """

    name: str  # registry key, e.g. "glue/sst2" or "style/yelp"
    main_metric: str  # higher is better; picks the best checkpoint
    eval_split: str = "dev"  # the split evaluated during training
    # A held-out split with references, scored once with the final model (style transfer: "test").
    final_eval_split: str | None = None
    # Whether the final scoring uses scorer models the runner provides (a style classifier and a
    # fluency LM, salora_cli.transfer.style_scoring), handed over through `configure`.
    uses_scorer_models: bool = False
    # Set by `score`: the one class every prediction fell in, if just one (a degenerate classifier).
    last_single_class: str | None = None

    def configure(self, **options: Any) -> "Task":
        """Task-specific settings (`task_options`); a task without any refuses them."""
        if options:
            raise SaloraError(f"task {self.name} takes no task_options (got {', '.join(sorted(options))})")
        return self

    def settle_options(self, data_dir: str | None) -> tuple[dict[str, Any], str | None]:
        """Before a run starts: task_options to add to the ones given, decided from the data (own data: the
        text columns, the classes in id order), and a console line saying what was decided (None: nothing).
        The run's config.yaml records them, so eval, predict and --resume rebuild the same task without
        deciding again, and a resumed run whose data now decides otherwise is refused. Default: nothing."""
        return {}, None

    def load_splits(self, data_dir: str | None, *, max_train_samples: int | None = None,
                    seed: int = 0) -> dict[str, list[Example]]:
        """Return {"train": [...], <eval splits>: [...]}; raise SaloraError on bad data."""
        raise NotImplementedError

    def build_model(self, model_ref: str) -> tuple[torch.nn.Module, Any]:
        """Return (model, tokenizer) for a hub id, local folder or offline alias."""
        raise NotImplementedError

    def collate(self, tokenizer: Any, examples: list[Example], max_length: int) -> dict[str, torch.Tensor]:
        """Tokenise a list of examples into a batch that includes `labels`, so `model(**batch).loss`
        is the task loss."""
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, tokenizer: Any, examples: list[Example], *, batch_size: int,
                max_length: int, device: torch.device) -> list:
        """One prediction per example, in order (model in eval mode). The loop shards this over
        processes and gathers the predictions before `score`."""
        raise NotImplementedError

    def score(self, examples: list[Example], predictions: list) -> dict[str, float]:
        """Metrics of `predictions` against the examples' references."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, tokenizer: Any, examples: list[Example], *,
                 batch_size: int, max_length: int, device: torch.device) -> dict[str, float]:
        """Metrics of `model` on `examples`: predict, then score."""
        return self.score(examples, self.predict(model, tokenizer, examples, batch_size=batch_size,
                                                 max_length=max_length, device=device))

    def baseline_note(self, metrics: dict[str, float]) -> str:
        """What an evaluation's main metric should be compared with, for the console (own data: the
        majority-class accuracy); "" for nothing."""
        return ""

    def fit_to_length(self, tokenizer: Any, examples: list[Example], max_length: int, split: str) -> list[Example]:
        """The examples that can be used at `max_length` tokens, once the tokenizer is known (default:
        all). A task that drops some (instruction tuning: a prompt longer than the cutoff) counts them
        in `data_summary`."""
        return examples

    def data_summary(self) -> dict[str, Any]:
        """What the run's record should say about the data read (source, records skipped and why);
        written to metrics.json as "data" when not empty."""
        return {}

    def outputs_to_save(self) -> list[dict[str, Any]]:
        """Rows the runner writes to generations.jsonl after the final scoring (none by default)."""
        return []


_REGISTRY: dict[str, Callable[[], Task]] = {}


def register(name: str, factory: Callable[[], Task]) -> None:
    _REGISTRY[name] = factory


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def registered(name: str) -> Task:
    """A new instance of a registered task (`tasks.get` first imports the built-in task modules)."""
    if name not in _REGISTRY:
        raise SaloraError(f"unknown task '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]()


def subset(examples: list, n: int | None, seed: int) -> list:
    """A seeded random subset of `n` examples, in their original order (all of them if n is None)."""
    if n is None or n >= len(examples):
        return examples
    idx = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in idx]


def single_class(preds: list) -> Any | None:
    """The one class every prediction falls in, or None when there are two or more.

    A classifier that always answers the majority class can still score well (MRPC: 68.4 accuracy,
    81.2 F1), so such an evaluation is flagged rather than reported as a result.
    """
    classes = set(preds)
    return next(iter(classes)) if len(preds) > 1 and len(classes) == 1 else None


def degenerate_flag(task: Task) -> dict:
    """{"degenerate": True, "predicted_class": name} for the task's last scored evaluation when every
    prediction was one class; {} otherwise (and for tasks that do not classify)."""
    name = task.last_single_class
    return {} if name is None else {"degenerate": True, "predicted_class": name}
