"""The rank budget: a target schedule, the Lagrangian multipliers, and the orthogonality penalty.

Constraint: the average expected rank per matrix ŝ must not exceed the target t(step). It is
enforced by Lagrangian relaxation (Gallego-Posada et al. 2022): the model minimises
task + μ·(ŝ − t) while μ is updated by gradient ascent on the same Lagrangian, projected to μ ≥ 0.

Plain descent–ascent overshoots near a tight budget: μ integrates the violation while ŝ is above
t, so when ŝ reaches t, μ is still large and keeps closing gates that are needed (and a removed
component never comes back). The controller is therefore PI-style (the "nuPI" view of dual
ascent): μ = max(0, μ_I + κ·(ŝ − t)), where μ_I is the projected ascent state. The proportional
term κ drops the pressure the moment ŝ crosses t, the integral finds the steady pressure that holds
ŝ at t. A cubic target ramp (slow near the budget) and a final frozen phase complete the design.
Violations are measured in ranks per matrix, so gains do not depend on model size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from salora_cli.adapters.config import AdapterConfig


@dataclass
class BudgetState:
    integral: float = 0.0  # μ_I (inequality) or λ1 (equality form)
    quadratic: float = 0.0  # λ2 (equality form only)
    multiplier: float = 0.0  # the μ applied at the last step (logged)


class BudgetController:
    def __init__(self, cfg: AdapterConfig, total_steps: int):
        self.cfg = cfg
        self.total_steps = max(int(total_steps), 1)
        self.state = BudgetState()

    # -------------------------------------------------------------- schedule
    def progress(self, step: int) -> float:
        return min(step / self.total_steps, 1.0)

    def target(self, step: int) -> float:
        """Target average rank per matrix at `step`: r_init, cubic ramp, then the budget."""
        c, p = self.cfg, self.progress(step)
        r0, b = float(c.r_init), c.budget_rank()
        if p <= c.ramp_start:
            return r0
        if p >= c.ramp_end or c.ramp_end == c.ramp_start:
            return b
        left = 1.0 - (p - c.ramp_start) / (c.ramp_end - c.ramp_start)
        return b + (r0 - b) * left ** 3

    def should_freeze(self, step: int) -> bool:
        return self.progress(step) >= self.cfg.freeze_at

    # ------------------------------------------------------------ Lagrangian
    def penalty(self, expected_avg: torch.Tensor, step: int) -> torch.Tensor:
        """The multiplier term added to the loss (multipliers are constants for the descent)."""
        v = expected_avg - self.target(step)
        s = self.state
        if self.cfg.budget_form == "equality":
            s.multiplier = s.integral
            return s.integral * v + s.quadratic * v * v
        s.multiplier = max(0.0, s.integral + self.cfg.multiplier_damping * float(v.detach()))
        return s.multiplier * v

    def ascend(self, expected_avg: float, step: int) -> None:
        """One projected gradient-ascent step of the multipliers on the Lagrangian."""
        v = expected_avg - self.target(step)
        s, lr = self.state, self.cfg.multiplier_lr
        if self.cfg.budget_form == "equality":
            s.integral += lr * v
            s.quadratic += lr * v * v
        else:
            s.integral = max(0.0, s.integral + lr * v)

    def state_dict(self) -> dict:
        return dict(vars(self.state))

    def load_state_dict(self, state: dict) -> None:
        self.state = BudgetState(**state)


def orthogonality_penalty(layers) -> torch.Tensor | None:
    """Mean over gated matrices of ‖AAᵀ − I‖²_F + ‖BᵀB − I‖²_F (rank-0 matrices are skipped).

    Matrices of equal shape are stacked and done in one batched product: a per-step regulariser
    over dozens of tiny matrices is otherwise dominated by per-op overhead.
    """
    groups: dict[tuple, list[torch.Tensor]] = {}
    count = 0
    for layer in layers:
        if not layer.gated or layer.rank == 0:
            continue
        count += 1
        groups.setdefault(("A",) + tuple(layer.lora_A.shape), []).append(layer.lora_A)
        groups.setdefault(("B",) + tuple(layer.lora_B.shape), []).append(layer.lora_B.T)
    if not count:
        return None
    total = None
    for mats in groups.values():
        stacked = torch.stack(mats)  # (n, r, d): rows should be orthonormal
        gram = stacked @ stacked.transpose(1, 2)
        eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
        term = (gram - eye).pow(2).sum()
        total = term if total is None else total + term
    return total / count
