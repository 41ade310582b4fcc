"""The interface every fine-tuning method implements for the training loop, with its defaults.

A new classification head (`classifier` / `score`, as peft's SEQ_CLS) always trains.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from salora.io import load_tensors, save_tensors
from salora_cli.core.config import RunConfig
from salora_cli.core.errors import SaloraError

HEAD_NAMES = ("classifier", "score")


def head_modules(model: nn.Module) -> list[str]:
    """The modules every method trains in full and saves: the task head, and whatever else the loaded
    checkpoint did not provide (tasks.models.load_marking_new: DeBERTa's pooler)."""
    from tasks.models import new_modules

    return list(dict.fromkeys([n for n in HEAD_NAMES if hasattr(model, n)] + new_modules(model)))


def _params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class Method:
    """Default behaviour: nothing to regularise, nothing to prune, structure always final.

    Built through the three constructors below (the registry, salora_cli.methods, calls them);
    a method with more to set up or restore overrides them.
    """

    name = "base"

    def __init__(self, model: nn.Module, cfg: RunConfig):
        self.model = model
        self.cfg = cfg

    @classmethod
    def create(cls, model: nn.Module, cfg: RunConfig, total_steps: int) -> "Method":
        """A fresh method on `model`, for a run of `total_steps` optimizer steps."""
        return cls(model, cfg)

    @classmethod
    def resume(cls, model: nn.Module, cfg: RunConfig, total_steps: int, folder: Path) -> "Method":
        """The method as it was at a checkpoint's weights (`save_checkpoint`)."""
        method = cls.create(model, cfg, total_steps)
        method.load_trainable(folder)
        return method

    @classmethod
    def from_saved(cls, model: nn.Module, cfg: RunConfig, folder: Path) -> "Method":
        """A trained method from its saved weights (`save`), for eval and export."""
        method = cls.create(model, cfg, 1)
        method.load(folder)
        return method

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        return [{"params": _params(self.model), "lr": lr, "weight_decay": weight_decay}]

    def log_values(self, step: int) -> dict[str, float]:
        """Values for the log line of `step`, read before its forward (e.g. the budget's state)."""
        return {}

    def task_loss(self, loss: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """The task's part of a training forward's `loss` (a method may fold a regulariser into
        the model's forward) and the regulariser's values to log (0-dim tensors are fine: the
        runner reads them only at a step that logs)."""
        return loss, {}

    def after_step(self, step: int, optimizer) -> dict[str, int]:
        return {}

    def finish(self, optimizer=None) -> dict[str, int]:
        return {}

    def budget_met(self, step: int) -> bool:
        """Whether a checkpoint at `step` is at the final budget (only those may be 'best')."""
        return True

    def rank_modules(self) -> list[dict] | None:
        """Per adapted matrix: name, role, layer, rank, r_init (None: not a low-rank method)."""
        return None

    def rank_point(self, step: int) -> dict | None:
        """Totals for the rank trajectory at `step`."""
        return None

    def trainable_count(self) -> int:
        return sum(p.numel() for p in _params(self.model))

    def save(self, folder: Path) -> None:
        """The trained weights, in the method's own format (used by eval / export)."""
        self.save_trainable(folder)

    def load(self, folder: Path) -> None:
        self.load_trainable(folder)

    def save_checkpoint(self, folder: Path) -> None:
        """Weights for resuming training (every method: its trainable tensors by name)."""
        self.save_trainable(folder)

    def save_trainable(self, folder: Path) -> None:
        save_tensors(folder / "trainable.safetensors",
                     {n: p for n, p in self.model.named_parameters() if p.requires_grad})

    def load_trainable(self, folder: Path) -> None:
        tensors = load_tensors(folder / "trainable.safetensors")
        try:
            unexpected = self.model.load_state_dict(tensors, strict=False).unexpected_keys
        except RuntimeError as exc:  # shape mismatch: a checkpoint of another model or method
            raise SaloraError(f"checkpoint {folder} does not fit this model ({str(exc).splitlines()[0]})") from exc
        if unexpected:
            raise SaloraError(f"checkpoint {folder} has parameters this model lacks: {unexpected[:3]}")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
