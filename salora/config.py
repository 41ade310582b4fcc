"""Adapter settings: everything that defines a SaLoRA (or plain LoRA) adapter and its rank budget.

Schedules are fractions of training so nobody has to compute total steps by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from salora.errors import SaloraError

ROLES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


@dataclass
class AdapterConfig:
    # Each field's help is its metadata["help"] (shown by the `salora train` flags).
    method: str = field(default="salora", metadata={"help": (
        "salora: gated components with a learned rank; lora: plain fixed-rank LoRA (no gates, no λ)")})
    r_init: int = field(default=12, metadata={"help": (
        "Initial rank per adapted matrix (LoRA's fixed rank)")})
    alpha: float = field(default=16.0, metadata={"help": (
        "Adapter scale numerator: ΔW is scaled by alpha / r_init. The scale stays fixed when components "
        "are removed, so removal never changes what the survivors contribute.")})
    dropout: float = field(default=0.0, metadata={"help": "Dropout probability on the adapter's input (x before A)"})
    target_roles: list[str] = field(default_factory=lambda: list(ROLES), metadata={"help": (
        "Module roles to adapt: " + ", ".join(ROLES))})
    target_modules: list[str] | None = field(default=None, metadata={"help": (
        "Explicit module-name regexes (matched against the end of each name); overrides target_roles")})

    # The rank budget and how it is enforced.
    budget: float | None = field(default=None, metadata={"help": (
        "Target average rank per adapted matrix. Neither budget nor budget_fraction given: two thirds "
        "of r_init (the AdaLoRA GLUE protocol's 12 -> 8).")})
    budget_fraction: float | None = field(default=None, metadata={"help": (
        "The budget as a fraction of r_init (instead of budget)")})
    budget_push: str = field(default="ranked", metadata={"help": (
        "How the budget pushes the gates closed (salora/budget.py). ranked: a hard constraint on the "
        "COUNT of open components (deterministic gate > 0) at the target; the multiplier's push falls "
        "only on the open components the task ranks lowest (smallest log α) beyond the target count, so "
        "they close and are removed during training. uniform: the original design, kept for the "
        "ablation: the expected rank ŝ = Σ P(z ≠ 0) at the target, the same preconditioned push on every "
        "gate (gates sink together, half-open).")})
    push_lead: float = field(default=0.0, metadata={"help": (
        "Extra lead of the ranked push, as a fraction of training. The push always aims at the target "
        "of the next removal step (a pushed gate closes within a few steps, so the components that "
        "must be gone at a removal are closed by then and the physical rank follows the schedule "
        "removal by removal); a lead larger than that aims further ahead. 0.1 was the previous "
        "default (kept for the ablation): at the ramp's first step it jumped the aim 10 % of training "
        "ahead, and in the cpu grid's 250-step SST-2 runs the first removal took 73 of 144 components "
        "while the target asked for 17, the physical rank then 30-55 under the target through the "
        "ramp.")})
    lead_before_ramp: bool = field(default=False, metadata={"help": (
        "Let push_lead start the ranked push before ramp_start (an earlier behaviour, kept for the "
        "ablation). false: nothing is pushed before ramp_start, so the first components close once the "
        "task has moved the gates. With the lead before the ramp the push began at step 2 and removed "
        "46 of 432 components at step 5 of a 50-step SST-2 run, chosen by log α that the task had "
        "barely moved (B was still ~0, and the gates' gradient is proportional to B).")})
    budget_form: str = field(default="inequality", metadata={"help": (
        "Constraint form of the uniform push: inequality (ŝ <= t, multiplier projected >= 0, PI-damped "
        "dual ascent) or equality (CoFi-style λ1·(ŝ−t) + λ2·(ŝ−t)², both by ascent)")})
    # Dual ascent gains, violations in ranks per matrix. The defaults are the ranked push's
    # (results/schedule.md: each removal follows the target's ask through the ramp).
    multiplier_lr: float = field(default=0.2, metadata={"help": (
        "Integral gain of the budget multiplier's dual ascent (violations in ranks per matrix): "
        "μ_I += multiplier_lr · violation, per step. The uniform push was tuned at 0.05.")})
    multiplier_damping: float = field(default=100.0, metadata={"help": (
        "Proportional gain of the budget multiplier: μ = μ_I + damping · violation. Since the push "
        "aims at the next removal, the excess it sees is one removal's worth, and the push must close "
        "those gates (log α from ~2.5 to −2.4) within about that time: at 20 a 17-component excess "
        "(1/36 rank per matrix each) moved them 0.47 a step, 10 steps to close, and in a 50-step run "
        "the ramp's first components then closed together (46 of 144 in one removal); at 100 they "
        "close in ~2 steps and each removal takes what the ramp asked one step before. The push only "
        "falls on open components beyond the target count, so a larger gain cannot take the rank "
        "below the target. The uniform push was tuned at 1; 20 was the previous default.")})

    # Target schedule, in fractions of total optimizer steps.
    ramp_start: float = field(default=0.1, metadata={"help": (
        "Fraction of training until which the target rank stays at r_init; then a cubic ramp down to the "
        "budget starts")})
    ramp_end: float = field(default=0.6, metadata={"help": (
        "Fraction of training at which the cubic ramp reaches the budget (held from then on)")})
    freeze_at: float = field(default=0.8, metadata={"help": (
        "Fraction of training at which the structure is frozen: gates become deterministic and fixed; "
        "the rest of training fine-tunes A, B, λ")})
    prune_every: int = field(default=5, metadata={"help": (
        "Steps between physical removals of components whose gate is closed (at most; see "
        "ramp_removals)")})
    ramp_removals: int = field(default=20, metadata={"help": (
        "The least number of removal steps through the ramp: in a short run prune_every shrinks to "
        "fit them (a 50-step run's 25-step ramp removes at every step, an 80-step run's every 2). "
        "Why: the cubic ramp asks for 1 − (1 − f)³ of all removal in its first fraction f, so with 20 "
        "removals no one step's ask is above 14 % of the total; with 5 (a 50-step run at prune_every "
        "5) the first was 49 %. 0: prune_every as given (the previous behaviour).")})

    # Hard-concrete gates (Louizos et al. 2018).
    gate_temperature: float = field(default=2.0 / 3.0, metadata={"help": "Hard-concrete gate temperature"})
    gate_low: float = field(default=-0.1, metadata={"help": "Hard-concrete gate stretch, lower limit (< 0)"})
    gate_high: float = field(default=1.1, metadata={"help": "Hard-concrete gate stretch, upper limit (> 1)"})
    gate_init_log_alpha: float = field(default=2.5, metadata={"help": (
        "Initial log α of every gate; a deterministic gate = 1 needs log α ≥ log(11) ≈ 2.4")})
    gate_lr: float = field(default=0.05, metadata={"help": (
        "Adam learning rate of the gates on the task gradient; the budget push is gate_lr · μ per step")})

    # Orthogonality penalty, averaged over adapted matrices.
    orth_reg: float = field(default=0.1, metadata={"help": "Orthogonality penalty weight c"})
    orth_form: str = field(default="weighted", metadata={"help": (
        "Orthogonality penalty form (salora/budget.py). weighted: c · Σ_{i≠j} ‖v_i‖‖v_j‖ cos²(v_i, v_j) "
        "over A's rows and, apart, B's columns: each pair's squared cosine weighted by the two "
        "components' sizes, so its gradient on B grows with B (0 at B = 0: it cannot outweigh the task "
        "while B is small) and mutually orthogonal components feel no force whatever their sizes. "
        "angles (previous default, ablation): the squared cosines alone, rows/columns normalised; its "
        "gradient is ∝ 1/‖b‖ and stalled short runs at the majority class. frobenius: c · (‖AAᵀ − I‖² + ‖BᵀB − I‖²), "
        "the original form (ablation): it also pulls every column of B to norm 1, so the regulariser, not "
        "the task, sets each component's size.")})
    orth_every: int = field(default=1, metadata={"help": (
        "Compute the orthogonality term on every k-th optimizer step only, at k × orth_reg, so it "
        "weighs the same per step on average (lazy regularisation). 1 (default): every step. The term "
        "is 3-5 points of SaLoRA's 7-8 % extra step time on SST-2's short CPU steps (docs/benchmark.md); k = 4 "
        "stepped 1.056 x LoRA against 1.085 but lost ~3 points at 50 SST-2 steps and on MRPC "
        "(results/lengths.md), so k > 1 is an ablation")})
    init: str = field(default="lora", metadata={"help": (
        "Initialisation of a gated component. lora: A orthonormal rows, B = 0, λ = 1 (ΔW = 0; B learns at "
        "LoRA's pace from step 1); svd: A, B orthonormal, λ = 0 (AdaLoRA's; ablation).")})

    def __post_init__(self) -> None:
        self.validate()

    @property
    def gated(self) -> bool:
        return self.method == "salora"

    def budget_rank(self) -> float:
        """Target average rank per matrix."""
        if self.budget_fraction is not None:
            return self.budget_fraction * self.r_init
        if self.budget is not None:
            return float(self.budget)
        return 2.0 * self.r_init / 3.0

    def validate(self) -> None:
        if self.method not in ("salora", "lora"):
            raise SaloraError(f"adapter method must be 'salora' or 'lora', got '{self.method}'")
        if not isinstance(self.r_init, int) or isinstance(self.r_init, bool) or self.r_init < 1:
            raise SaloraError(f"rank (r_init) must be a positive integer, got {self.r_init!r}")
        if self.alpha <= 0:
            raise SaloraError(f"alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise SaloraError(f"dropout must be in [0, 1), got {self.dropout}")
        bad = [r for r in self.target_roles if r not in ROLES]
        if bad:
            raise SaloraError(f"unknown target role(s) {bad}; roles are {', '.join(ROLES)}")
        if not self.target_roles and not self.target_modules:
            raise SaloraError("no target roles or modules given")
        if self.budget is not None and self.budget_fraction is not None:
            raise SaloraError("give either budget (average rank) or budget_fraction, not both")
        if self.gated:
            b = self.budget_rank()
            if not 0 < b <= self.r_init:
                raise SaloraError(
                    f"budget must be an average rank in (0, r_init={self.r_init}], got {b:g}")
            if not 0.0 <= self.ramp_start <= self.ramp_end <= self.freeze_at <= 1.0:
                raise SaloraError(
                    "schedule fractions must satisfy 0 <= ramp_start <= ramp_end <= freeze_at <= 1, "
                    f"got {self.ramp_start}, {self.ramp_end}, {self.freeze_at}")
        for name, value, allowed in (("budget_push", self.budget_push, ("ranked", "uniform")),
                                     ("orth_form", self.orth_form, ("weighted", "angles", "frobenius")),
                                     ("init", self.init, ("lora", "svd"))):
            if value not in allowed:
                raise SaloraError(f"{name} must be one of {', '.join(allowed)}, got '{value}'")
        if self.budget_form not in ("inequality", "equality"):
            raise SaloraError(f"budget_form must be 'inequality' or 'equality', got '{self.budget_form}'")
        if not 0.0 <= self.push_lead < 1.0:
            raise SaloraError(f"push_lead must be in [0, 1), got {self.push_lead}")
        if self.prune_every < 1:
            raise SaloraError(f"prune_every must be >= 1, got {self.prune_every}")
        if self.ramp_removals < 0:
            raise SaloraError(f"ramp_removals must be >= 0, got {self.ramp_removals}")
        if not self.gate_low < 0.0 < 1.0 < self.gate_high:
            raise SaloraError("gate stretch limits must satisfy gate_low < 0 < 1 < gate_high")
        if self.gate_temperature <= 0 or self.gate_lr <= 0 or self.multiplier_lr <= 0:
            raise SaloraError("gate_temperature, gate_lr and multiplier_lr must be positive")
        if self.orth_every < 1:
            raise SaloraError(f"orth_every must be >= 1, got {self.orth_every}")
        if self.orth_reg < 0 or self.multiplier_damping < 0:
            raise SaloraError("orth_reg and multiplier_damping must be >= 0")
