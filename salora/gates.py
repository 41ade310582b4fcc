"""Hard-concrete gates (Louizos, Welling & Kingma 2018, "Learning Sparse Neural Networks through L0").

A gate z ∈ [0, 1] per component: sample s = σ((log u − log(1−u) + log α) / β), stretch it to
(γ, ζ) and clip to [0, 1]. The clip puts real probability mass on exactly 0 and exactly 1, so the
expected number of non-zero gates is a differentiable count: the "expected rank".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_EPS = 1e-6


@dataclass(frozen=True)
class HardConcrete:
    temperature: float = 2.0 / 3.0  # β
    low: float = -0.1  # γ
    high: float = 1.1  # ζ

    def sample(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """A fresh stochastic gate per component (training)."""
        u = torch.rand_like(log_alpha).clamp_(_EPS, 1.0 - _EPS)
        s = torch.sigmoid((torch.logit(u) + log_alpha) / self.temperature)
        return (s * (self.high - self.low) + self.low).clamp(0.0, 1.0)

    def deterministic(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """The test-time gate ẑ = clamp(σ(log α)·(ζ−γ)+γ, 0, 1)."""
        return (torch.sigmoid(log_alpha) * (self.high - self.low) + self.low).clamp(0.0, 1.0)

    def prob_open(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """P(z ≠ 0) = σ(log α − β·log(−γ/ζ)); its sum over components is the expected rank."""
        return torch.sigmoid(log_alpha - self.temperature * math.log(-self.low / self.high))

    def closed_threshold(self) -> float:
        """log α at or below which the deterministic gate is exactly 0."""
        p = -self.low / (self.high - self.low)
        return math.log(p / (1.0 - p))
