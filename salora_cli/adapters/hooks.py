"""The method's side of the training loop: two calls per optimizer step.

    loss = task_loss + hooks.regularizer(step)      # orthogonality penalty
    loss.backward(); optimizer.step()
    hooks.after_step(step, optimizer)               # gates: Adam on the task gradient, then the
    optimizer.zero_grad()                           # budget pressure; dual ascent; removal; freeze

The gates (log α) have their own Adam, owned here, at a constant rate, and the budget term of the
Lagrangian is applied to them decoupled from it (see adapters/budget.py for why).
Removals are counted by cause: "gates" (a gate closed during training) and "projection" (the
freeze trims whatever the gates left above the budget), so a report can tell learned structure
from a post-hoc cut.
Plain LoRA uses the same hooks; they have nothing to do.
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
        # foreach: one kernel per op over all gate vectors (CPU defaults to a Python loop)
        self.gate_optimizer = (torch.optim.Adam(adapters.gate_parameters(), lr=self.cfg.gate_lr,
                                                foreach=True) if self.cfg.gated else None)
        self._expected: float | None = None  # ŝ after the last step, for logging
        self.removed = {"gates": 0, "projection": 0}  # components removed so far, by cause
        if self.cfg.gated:
            with torch.no_grad():
                self._expected = float(adapters.expected_rank_avg())

    @property
    def active(self) -> bool:
        """True while the structure is still being learned."""
        return self.controller is not None and not self.adapters.structure_frozen

    def regularizer(self, step: int) -> tuple[torch.Tensor | None, dict[str, float]]:
        if not self.cfg.gated:
            return None, {}
        loss, logs = None, {}
        if self.cfg.orth_reg > 0:
            orth = orthogonality_penalty(self.adapters, self.cfg.orth_form)
            if orth is not None:
                loss = self.cfg.orth_reg * orth
                logs["orth"] = float(orth.detach())
        if self.active and self._expected is not None:
            target, open_rank = self.controller.target(step), self.adapters.open_rank_avg()
            # the constrained quantity: open count (ranked push) or ŝ (uniform push)
            measured = open_rank if self.cfg.budget_push == "ranked" else self._expected
            logs.update(expected_rank=self._expected, open_rank=open_rank, target_rank=target,
                        multiplier=self.controller.state.multiplier,
                        lagrangian=self.controller.state.multiplier * (measured - target))
        return loss, logs

    def _optimizers(self, optimizer) -> list:
        return [o for o in (optimizer, self.gate_optimizer) if o is not None]

    def after_step(self, step: int, optimizer) -> dict[str, int]:
        """Call after optimizer.step() (before or after its zero_grad); `step` counts steps done."""
        if not self.active:
            return {}
        self.gate_optimizer.step()  # the task's say on each gate
        self.gate_optimizer.zero_grad(set_to_none=True)
        ranked = self.cfg.budget_push == "ranked"
        # the ranked push aims ahead by the time a gate takes to close (AdapterConfig.push_lead)
        aim = step + int(self.cfg.push_lead * self.total_steps) if ranked else step
        with torch.no_grad():  # the budget's say, decoupled from the gates' Adam
            expected = float(self.adapters.expected_rank_avg())
            if ranked:
                measured = self.adapters.open_rank_avg()
                mu = self.controller.pressure(measured, aim)
                keep = int(self.controller.target(aim) * len(self.adapters) + 1e-9)
                self.adapters.push_marginal(keep, self.cfg.gate_lr * mu)
            else:  # uniform: the same push on every open gate, on the expected rank
                measured = expected
                mu = self.controller.pressure(measured, aim)
                if mu:
                    torch._foreach_sub_(self.adapters.gate_parameters(), self.cfg.gate_lr * mu)
        self._expected = expected
        self.controller.ascend(measured, aim)
        events = {}
        freeze = self.controller.should_freeze(step)
        if step % self.cfg.prune_every == 0 or freeze:
            events.update(self._remove_closed(optimizer))
        if freeze:
            events = _add(events, self._freeze(optimizer))
        return events

    def _remove_closed(self, optimizer) -> dict[str, int]:
        n = self.adapters.remove_closed(self._optimizers(optimizer))
        self.removed["gates"] += n
        return {"removed": n, "removed_by_gates": n}

    def finish(self, optimizer=None) -> dict[str, int]:
        """End of training: a final removal and, if the schedule never froze, the freeze."""
        if not self.active:
            return {}
        return _add(self._remove_closed(optimizer), self._freeze(optimizer))

    def _freeze(self, optimizer) -> dict[str, int]:
        removed = self.adapters.project_to_budget(self._optimizers(optimizer))
        self.removed["projection"] += removed
        self.adapters.freeze_structure()
        return {"removed": removed, "removed_by_projection": removed, "frozen": 1}

    def state_dict(self) -> dict:
        if self.controller is None:
            return {}
        return {"controller": self.controller.state_dict(), "expected": self._expected,
                "removed": dict(self.removed),
                "gate_optimizer": self.gate_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.controller is None or not state:
            return
        self.controller.load_state_dict(state["controller"])
        self._expected = state["expected"]
        self.removed = dict(state.get("removed", self.removed))
        self.gate_optimizer.load_state_dict(state["gate_optimizer"])


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Merge two event dicts, summing the counts they share."""
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}
