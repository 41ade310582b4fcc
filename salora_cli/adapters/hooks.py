"""The method's side of the training loop: two calls per optimizer step.

    loss = task_loss + hooks.regularizer(step)      # orthogonality + budget Lagrangian
    loss.backward(); optimizer.step()
    hooks.after_step(step, optimizer)               # dual ascent, removal, freeze

Plain LoRA uses the same hooks; they simply have nothing to do.
"""
from __future__ import annotations

import torch

from salora_cli.adapters.budget import BudgetController, orthogonality_penalty
from salora_cli.adapters.model import AdapterSet


class MethodHooks:
    def __init__(self, adapters: AdapterSet, total_steps: int):
        self.adapters = adapters
        self.cfg = adapters.cfg
        self.total_steps = total_steps
        self.controller = BudgetController(self.cfg, total_steps) if self.cfg.gated else None
        self._last_expected: float | None = None

    @property
    def active(self) -> bool:
        """True while the structure is still being learned."""
        return self.controller is not None and not self.adapters.structure_frozen

    def regularizer(self, step: int) -> tuple[torch.Tensor | None, dict[str, float]]:
        if not self.cfg.gated:
            return None, {}
        loss, logs = None, {}
        if self.cfg.orth_reg > 0:
            orth = orthogonality_penalty(self.adapters)
            if orth is not None:
                loss = self.cfg.orth_reg * orth
                logs["orth"] = float(orth.detach())
        if self.active:
            expected = self.adapters.expected_rank_avg()
            penalty = self.controller.penalty(expected, step)
            loss = penalty if loss is None else loss + penalty
            self._last_expected = float(expected.detach())
            logs.update(expected_rank=self._last_expected, target_rank=self.controller.target(step),
                        multiplier=self.controller.state.multiplier)
        return loss, logs

    def after_step(self, step: int, optimizer) -> dict[str, int]:
        """Call after optimizer.step() and zero_grad(); `step` counts completed optimizer steps."""
        if not self.active:
            return {}
        events = {}
        if self._last_expected is not None:
            self.controller.ascend(self._last_expected, step)
        if step % self.cfg.prune_every == 0 or self.controller.should_freeze(step):
            events["removed"] = self.adapters.remove_closed(optimizer)
        if self.controller.should_freeze(step):
            events["removed"] = events.get("removed", 0) + self.adapters.project_to_budget(optimizer)
            self.adapters.freeze_structure()
            events["frozen"] = 1
        return events

    def finish(self, optimizer=None) -> dict[str, int]:
        """End of training: a final removal and, if the schedule never froze, the freeze."""
        if not self.active:
            return {}
        removed = self.adapters.remove_closed(optimizer) + self.adapters.project_to_budget(optimizer)
        self.adapters.freeze_structure()
        return {"removed": removed, "frozen": 1}

    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict() if self.controller else None,
                "last_expected": self._last_expected}

    def load_state_dict(self, state: dict) -> None:
        if self.controller is not None and state.get("controller") is not None:
            self.controller.load_state_dict(state["controller"])
        self._last_expected = state.get("last_expected")
