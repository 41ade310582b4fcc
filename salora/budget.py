"""The rank budget: a target schedule, the Lagrange multiplier, and the orthogonality penalty.

Constraint: at step t the adapted matrices may hold at most t(step) components per matrix on
average. It is enforced by Lagrangian relaxation (Gallego-Posada et al. 2022): the gates descend on
task + μ·(c − t) while μ is updated by gradient ascent on the same Lagrangian, projected to μ ≥ 0.
What c is, and how the push μ is spread over the gates, is the `budget_push` setting.

"ranked" (default). c = the number of OPEN components (deterministic gate ẑ > 0), i.e. exactly
the rank the model will have once closed components are removed. The count is piecewise
constant, so its gradient is replaced by a straight-through surrogate that falls only on the
components that must close for c to meet t: the open components beyond the target count, taken
in increasing log α (the ones the task has defended least so far). Each gets the push gate_lr·μ
(decoupled from the gates' Adam, see below); every other gate is left to the task. Why: the
uniform push moved all gates down together until Σ P(z ≠ 0) met the target with every gate
half-open and none closed (on SST-2 the physical rank was still 403/432 at 80 % of training,
and one cut at the freeze removed 66–97 % of all components). Ranking turns the same pressure
into a sequence of closures that keeps the physical rank on the schedule; a gate whose task
gradient lifts it above the marginal ones leaves the pushed set and another takes its place.

"uniform" (ablation). c = ŝ = Σ P(z ≠ 0), the expected rank, with the push spread over all gates
through the diagonal preconditioner 1/P(1 − P), so every gate gets the same push.

Shared by both (each answers a failure seen while building it):
- Decoupled pressure. The gates' task gradient goes through Adam (scale-free, so a weak but
  consistent usefulness signal counts), while the budget term is applied outside Adam, like
  AdamW's decoupled weight decay: log α -= gate_lr · μ. Inside Adam any μ > 0 moved every gate at
  full speed (bang-bang control; the expected rank overshot 30 % below target on SST-2).
- PI multiplier (the "nuPI" view of dual ascent): μ = max(0, μ_I + κ·(c − t)), where μ_I is the
  projected ascent state. κ reacts at once to a backlog; μ_I learns the pressure the task resists
  with. Conditional integration (anti-windup): while c is above t but already closing the gap,
  μ_I stops growing.
- A cubic target ramp (fast at first, slow near the budget), removal only of gates that are
  exactly closed, and a final frozen phase (as AdaLoRA's final fine-tuning) complete the design.
Violations are measured in ranks per matrix, so the gains do not depend on model size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from salora.config import AdapterConfig
from salora.stacks import WeightStacks, stack_weights


@dataclass
class BudgetState:
    # floats, or 0-dim float64 tensors while training (see `pressure`); saved as floats
    integral: float | torch.Tensor = 0.0  # μ_I (inequality) or λ1 (equality form)
    quadratic: float | torch.Tensor = 0.0  # λ2 (equality form only)
    multiplier: float | torch.Tensor = 0.0  # the pressure μ applied at the last step (logged)
    last_violation: float | torch.Tensor | None = None


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

    def removal_every(self) -> int:
        """Steps between removals: prune_every, shrunk so the ramp holds at least ramp_removals of
        them (AdapterConfig.ramp_removals)."""
        c = self.cfg
        ramp_steps = int(round((c.ramp_end - c.ramp_start) * self.total_steps))
        if c.ramp_removals == 0 or ramp_steps == 0:
            return c.prune_every
        return max(1, min(c.prune_every, ramp_steps // c.ramp_removals))

    def aim(self, step: int) -> int:
        """The step whose target the ranked push aims at from `step`: the next removal step (the
        gates it must close have until then), or push_lead of training ahead if that is further.
        Before ramp_start the aim is `step` itself unless lead_before_ramp (an ablation)."""
        c = self.cfg
        if not (c.lead_before_ramp or self.progress(step) >= c.ramp_start):
            return step
        return step + max(int(c.push_lead * self.total_steps), -step % self.removal_every())

    def removes_at(self, step: int) -> bool:
        return step % self.removal_every() == 0

    def should_freeze(self, step: int) -> bool:
        return self.progress(step) >= self.cfg.freeze_at

    # ------------------------------------------------------------ Lagrangian
    def pressure(self, measured_avg, step: int):
        """∂/∂c of the Lagrangian's budget term at the current multipliers: the push on the gates.

        `measured_avg`: the constrained rank per matrix (open count or ŝ, by `budget_push`), a
        float or a 0-dim float64 tensor. The training step passes tensors, so that nothing here
        waits for the device (no `.item()` in a step that does not log or prune); the arithmetic is
        the same IEEE double arithmetic either way, so both give bit-identical multipliers."""
        v = measured_avg - self.target(step)
        s = self.state
        if self.cfg.budget_form == "equality":  # λ1·v + λ2·v²: may push gates back up
            s.multiplier = s.integral + 2.0 * s.quadratic * v
        else:
            s.multiplier = _at_least_zero(s.integral + self.cfg.multiplier_damping * v)
        return s.multiplier

    def ascend(self, measured_avg, step: int) -> None:
        """One projected gradient-ascent step of the multipliers (∂L/∂μ = c − t)."""
        v = measured_avg - self.target(step)
        s, lr = self.state, self.cfg.multiplier_lr
        last, s.last_violation = s.last_violation, v
        if self.cfg.budget_form == "equality":
            s.integral += lr * v
            s.quadratic += lr * v * v
            return
        grown = _at_least_zero(s.integral + lr * v)
        if last is None:
            s.integral = grown
        elif torch.is_tensor(v):  # conditional integration without a device sync
            s.integral = torch.where((v > 0) & (v < last), s.integral, grown)
        elif not 0.0 < v < last:
            s.integral = grown

    def state_dict(self) -> dict:
        return {k: float(v) if torch.is_tensor(v) else v for k, v in vars(self.state).items()}

    def load_state_dict(self, state: dict) -> None:
        self.state = BudgetState(**state)


def _at_least_zero(x):
    return x.clamp(min=0.0) if torch.is_tensor(x) else max(0.0, x)


# "angles" (the previous default, kept for the ablation): below a norm of ~0.05 a column counts as
# "not yet grown" and the penalty fades to a quartic one. It still stalled short runs (issue 19).
ORTH_EPS = 2.5e-3
# "weighted" only needs its norms to be differentiable at 0 (B starts there).
WEIGHTED_EPS = 1e-12


def orthogonality_penalty(layers, form: str = "weighted", eps: float | None = None,
                          stacks: WeightStacks | None = None) -> torch.Tensor | None:
    """Mean over gated matrices of the orthogonality defect of A's rows and B's columns.

    form "weighted" (default): Σ_{i≠j} ‖v_i‖‖v_j‖ cos²(v_i, v_j) over the rows of A and, apart, the
    columns of B, i.e. each pair's squared cosine weighted by the two components' sizes. It is
    homogeneous of degree 2, so its gradient on a column of B grows with that column (∝ ‖b‖): at
    B = 0 it is 0 and the task alone moves B, and it separates components once they carry weight.
    A set of mutually orthogonal components feels no force at all, whatever their sizes, so the
    penalty does not set sizes either. Why not a scale-free form: the gradient of any penalty on
    angles alone is ∝ 1/‖b‖, and B starts at 0 with every column following the same dominant task
    direction, so there it outweighed the task (measured on SST-2, 50 steps: the "angles" form's
    gradient on B was 1.5-4x the task's from step 3 to step 30 and larger on 60-86 % of B's entries;
    Adam follows the larger one element by element, B stayed at norm ~0.05 and the classifier at
    the majority class; with "weighted" the task's gradient was larger throughout and it learned).
    form "angles" (ablation, the previous default): rows/columns normalised by √(‖v‖² + eps), squared
    cosines only. form "frobenius" (ablation, the original): ‖AAᵀ − I‖² + ‖BᵀB − I‖², which also pulls
    every norm to 1.
    A's rows and B's columns of one size d go into one stack, A's and B's alike, each matrix's
    vectors at their own index (n, r_max, d), zero rows padding the matrices of lower rank, and each
    stack is done in one batched product: a per-step regulariser over dozens of tiny matrices is
    otherwise dominated by per-op overhead (MiniLM's 36 matrices make two stacks, d = 384 and
    d = 1536, whatever their ranks). A zero row adds nothing (its products with every vector are 0,
    and the Frobenius form does not ask it for a unit diagonal). Rank-0 matrices skip. `stacks`:
    this forward's stacks (salora.stacks), which the layers computed with; without them the layers'
    A and B are stacked here.
    """
    if eps is None:
        eps = WEIGHTED_EPS if form == "weighted" else ORTH_EPS
    if stacks is None:
        stacks = stack_weights(layers)
    if not stacks.plan.count:
        return None
    total = None
    for stacked, real in stacks.vectors():  # (n, r, d) each: the vectors that should be orthonormal are the rows
        if form == "angles":
            stacked = stacked * torch.rsqrt(stacked.pow(2).sum(-1, keepdim=True) + eps)
        gram = stacked @ stacked.transpose(1, 2)
        if form == "weighted":  # (v_i·v_j)² / (‖v_i‖‖v_j‖) = ‖v_i‖‖v_j‖ cos²
            norms = torch.sqrt(torch.diagonal(gram, dim1=-2, dim2=-1) + eps)  # ‖v‖² is gram's diagonal
            term = ((gram * _off_diagonal(gram)).pow(2) / (norms.unsqueeze(-1) * norms.unsqueeze(-2))).sum()
        elif form == "angles":  # the diagonal is ‖v‖²/(‖v‖² + eps): a size, not an angle
            term = (gram * _off_diagonal(gram)).pow(2).sum()
        else:  # a padded (zero) row's target is 0, not a unit diagonal
            eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
            term = (gram - (eye if real is None else torch.diag_embed(real))).pow(2).sum()
        total = term if total is None else total + term
    return total / stacks.plan.count


_OFF_DIAGONAL: dict[tuple, torch.Tensor] = {}


def _off_diagonal(gram: torch.Tensor) -> torch.Tensor:
    """1 − I for `gram`'s r × r blocks, built once per (r, device, dtype): two ops less per stack
    and step."""
    key = (gram.shape[-1], gram.device, gram.dtype)
    if key not in _OFF_DIAGONAL:
        _OFF_DIAGONAL[key] = 1 - torch.eye(key[0], device=gram.device, dtype=gram.dtype)
    return _OFF_DIAGONAL[key]
