"""The adapted linear layer: W x + s · B · diag(λ ⊙ z) · A x, and plain LoRA as its gate-free case.

Choices where the paper is silent (docs/method.md says why):
- SaLoRA initialises A with orthonormal rows, B = 0 and λ = 1, so ΔW = 0 at start (the wrapped
  model is the pre-trained one) and B receives task gradient from the first step, exactly as in
  LoRA; λ, A and a component's gate receive it as soon as its column of B is non-zero, i.e. as
  soon as the component contributes. (The SVD-style alternative, λ = 0 with random orthonormal
  B, learned nothing in 250 SST-2 steps here, nor did peft's AdaLoRA which initialises that way:
  the magnitudes grow along random directions long before the directions align.) The
  orthogonality penalty then pulls B's columns towards orthonormal while λ carries the scale.
- Plain LoRA uses peft's initialisation (A Kaiming-uniform, B = 0) and has no λ and no gates, so
  with the same weights it computes exactly what peft's LoRA computes.
- The scale s = alpha / r_init is fixed at creation: removing components never rescales the others.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from salora.gates import HardConcrete


def _in_out(base: nn.Module) -> tuple[int, int, bool]:
    """(in_features, out_features, fan_in_fan_out) for nn.Linear and GPT-2's Conv1D."""
    if isinstance(base, nn.Linear):
        return base.in_features, base.out_features, False
    if type(base).__name__ == "Conv1D":  # transformers.pytorch_utils.Conv1D: weight is (in, out)
        d_in, d_out = base.weight.shape
        return d_in, d_out, True
    raise TypeError(f"cannot adapt {type(base).__name__}: only Linear and Conv1D layers")


class AdaptedLinear(nn.Module):
    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0,
                 gates: HardConcrete | None = None, gate_init_log_alpha: float = 2.5,
                 init: str = "lora"):
        super().__init__()
        self.base = base
        self.in_features, self.out_features, self.fan_in_fan_out = _in_out(base)
        self.r_init = r
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.gates = gates
        self.init = init  # gated components: "lora" (B = 0, λ = 1) or "svd" (λ = 0)
        weight = base.weight
        kw = dict(device=weight.device, dtype=weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, r, **kw))
        if gates is not None:
            self.lora_lambda = nn.Parameter(torch.zeros(r, **kw))
            # The gates' log α is a leaf tensor but NOT a registered parameter: it never shows up in
            # model.parameters(), so no optimizer a user builds (or Trainer's) steps it a second
            # time, weight-decays it, or counts it in gradient clipping. The controller steps it
            # with its own Adam (salora.controller); _apply below moves it with the module.
            self.log_alpha: torch.Tensor | None = torch.full((r,), gate_init_log_alpha, **kw).requires_grad_()
        else:
            self.register_parameter("lora_lambda", None)
            self.log_alpha = None
        self.merged = False
        self.structure_frozen = False  # gates fixed at their deterministic value
        self._coef: torch.Tensor | None = None  # this forward's s·λ⊙z, set by component_scales
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.gates is None:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B)
            return
        # A: orthonormal rows. "lora": B = 0 so ΔW = 0, λ = 1 so B learns at LoRA's pace from step
        # 1, and a component's size s·λ·‖a‖·‖b‖ grows from 0 as the task asks. "svd": B with
        # orthonormal columns and λ = 0 (AdaLoRA's): the size lives in λ alone.
        self.lora_A.copy_(_orthonormal(self.rank, self.in_features, self.lora_A))
        if self.init == "svd":
            self.lora_B.copy_(_orthonormal(self.out_features, self.rank, self.lora_B))
            self.lora_lambda.zero_()
        else:
            self.lora_B.zero_()
            self.lora_lambda.fill_(1.0)

    # ------------------------------------------------------------ the pool
    def pool_into(self, pool, slot: int) -> None:
        """Hand λ and log α over to `pool` (salora.pool): from now on they are views of its flat
        tensors. The pool is registered on the model, not here (a plain reference: no submodule)."""
        del self._parameters["lora_lambda"]
        del self.__dict__["log_alpha"]
        self.__dict__["_pool"], self.__dict__["_slot"] = pool, slot

    @property
    def pool(self):
        return self.__dict__.get("_pool")

    def __getattr__(self, name: str):
        if name in ("lora_lambda", "log_alpha"):
            pool = self.__dict__.get("_pool")
            if pool is not None:
                return pool.segment(name, self.__dict__["_slot"])
        return super().__getattr__(name)

    # ------------------------------------------------------------- structure
    @property
    def gated(self) -> bool:
        return self.gates is not None

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    @property
    def stochastic(self) -> bool:
        """Whether this forward samples its gates (training, structure not yet frozen)."""
        return self.gates is not None and self.training and not self.structure_frozen

    def expected_rank(self) -> torch.Tensor:
        if self.gates is None:
            return self.lora_A.new_tensor(float(self.rank))
        return self.gates.prob_open(self.log_alpha).sum()

    def closed_components(self) -> torch.Tensor:
        """Indices of components whose deterministic gate is 0."""
        if self.gates is None:
            return torch.empty(0, dtype=torch.long, device=self.lora_A.device)
        return torch.nonzero(self.gates.deterministic(self.log_alpha) == 0).flatten()

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged or self.rank == 0:
            return out
        A, B = self.lora_A, self.lora_B
        if self.gates is None:
            return out + F.linear(F.linear(self.dropout(x), A) * self.scaling, B)
        # s·λ⊙z scales A's rows (salora.stacks says why A and not the r-dimensional hidden state):
        # in a training forward the model-level hook has scaled every layer's A at once (views of
        # its stacks); otherwise the scales were computed for every layer at once (AdapterSet), or,
        # when this layer is called on its own, here
        pool = self.pool
        if pool is not None and pool.stacks is not None:
            A, B = pool.stacks.views[self._slot]
        else:
            coef = pool.coefs[self._slot] if pool is not None and pool.coefs is not None else self._coef
            if coef is None:
                coef = component_scales([self])[0]
            A = A * coef.unsqueeze(1)
        return out + F.linear(F.linear(self.dropout(x), A), B)

    # ----------------------------------------------------------------- merge
    def delta_weight(self) -> torch.Tensor:
        """s · B · diag(λ ⊙ ẑ) · A in the (out, in) orientation, with deterministic gates."""
        B = self.lora_B
        if self.gates is not None:
            B = B * (self.lora_lambda * self.gates.deterministic(self.log_alpha))
        return (B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self._add_to_base(self.delta_weight())
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self._add_to_base(-self.delta_weight())
        self.merged = False

    def _add_to_base(self, delta: torch.Tensor) -> None:
        w = self.base.weight
        w.add_((delta.T if self.fan_in_fan_out else delta).to(w.dtype))

    # --------------------------------------------------------------- removal
    def adapter_parameters(self) -> dict[str, tuple[nn.Parameter, int]]:
        """Each per-component parameter and the dimension that indexes components (λ and log α
        are views of the pool's flat tensors once pooled: reading and copying into them works)."""
        params = {"lora_A": (self.lora_A, 0), "lora_B": (self.lora_B, 1)}
        if self.gates is not None:
            params["lora_lambda"] = (self.lora_lambda, 0)
            params["log_alpha"] = (self.log_alpha, 0)
        return params

    def _own_parameters(self) -> dict[str, tuple[nn.Parameter, int]]:
        params = self.adapter_parameters()
        if self.pool is not None:
            del params["lora_lambda"], params["log_alpha"]
        return params

    @torch.no_grad()
    def keep_components(self, keep: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Slice every per-component parameter (and its optimizer state) to the `keep` indices.

        Each sliced tensor becomes a NEW Parameter swapped into the optimizer with its state sliced
        to match. (Resizing `p.data` in place is not enough: autograd caches a leaf's shape in its
        gradient accumulator, which outlives a step while any old loss tensor is still referenced.)
        """
        keep = keep.to(self.lora_A.device)
        self.keep_own_components(keep, optimizer)
        if self.pool is not None:
            self.pool.keep({self._slot: keep}, optimizer)

    @torch.no_grad()
    def keep_own_components(self, keep: torch.Tensor, optimizer=None) -> None:
        """keep_components for the tensors this layer holds itself (all but the pooled λ, log α)."""
        keep = keep.to(self.lora_A.device)
        for attr, (p, dim) in self._own_parameters().items():
            # an emptied matrix is skipped in forward, so it must not count as trainable (DDP)
            new = _like(p, p.detach().index_select(dim, keep).contiguous(), p.requires_grad and keep.numel() > 0)
            setattr(self, attr, new)
            _swap_in_optimizer(optimizer, p, new, lambda v, d=dim, n=p.shape[dim], nd=p.dim():
                               v.index_select(d, keep).contiguous()
                               if torch.is_tensor(v) and v.dim() == nd and v.shape[d] == n else v)

    def remove_closed(self, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Physically remove components whose deterministic gate is 0; returns how many."""
        closed = self.closed_components()
        if closed.numel() == 0:
            return 0
        mask = torch.ones(self.rank, dtype=torch.bool, device=closed.device)
        mask[closed] = False
        self.keep_components(torch.nonzero(mask).flatten(), optimizer)
        return int(closed.numel())

    @torch.no_grad()
    def resize_(self, r: int) -> None:
        """Set the rank to r with uninitialised values (for loading a saved, pruned adapter)."""
        if self.pool is not None:
            self.pool.resize_slot(self._slot, r)
        for attr, (p, dim) in self._own_parameters().items():
            shape = list(p.shape)
            shape[dim] = r
            # an emptied matrix is skipped in forward: trainable, it would break DDP (no gradient)
            setattr(self, attr, _like(p, p.new_empty(shape), p.requires_grad and r > 0))

    def _apply(self, fn, recurse: bool = True):
        # .to() / .cuda() / .half() reach registered tensors only; the gates follow by hand, in
        # place (.data), so the controller's optimizer keeps pointing at the same tensor
        super()._apply(fn, recurse)
        if self.pool is None and self.log_alpha is not None:
            move_in_place(self.log_alpha, fn)
        return self

    def extra_repr(self) -> str:
        kind = "salora" if self.gated else "lora"
        return f"{kind}, rank={self.rank}/{self.r_init}, in={self.in_features}, out={self.out_features}"


def component_scales(layers: list[AdaptedLinear]) -> list[torch.Tensor | None]:
    """s · λ ⊙ z for each layer (None for ungated or rank-0 layers), in a few batched ops.

    Sampling dozens of tiny gate vectors one layer at a time costs more in per-op overhead than
    the gates themselves; concatenating them makes SaLoRA's forward cost that of plain LoRA plus
    a constant handful of ops.
    """
    out: list[torch.Tensor | None] = [None] * len(layers)
    for stochastic in (True, False):
        idx = [i for i, l in enumerate(layers) if l.gates is not None and l.rank and l.stochastic == stochastic]
        if not idx:
            continue
        chosen = [layers[i] for i in idx]
        gates = chosen[0].gates
        log_alpha = torch.cat([l.log_alpha for l in chosen])
        z = gates.sample(log_alpha) if stochastic else gates.deterministic(log_alpha)
        scales = {l.scaling for l in chosen}
        coef = torch.cat([l.lora_lambda for l in chosen]) * z
        if len(scales) == 1:
            coef = coef * scales.pop()
        else:
            coef = coef * torch.cat([coef.new_full((l.rank,), l.scaling) for l in chosen])
        for i, c in zip(idx, coef.split([l.rank for l in chosen])):
            out[i] = c
    return out


def _like(old: torch.Tensor, value: torch.Tensor, requires_grad: bool) -> torch.Tensor:
    """`value` as the same kind of tensor as `old`: a Parameter, or (the gates) a plain leaf."""
    if isinstance(old, nn.Parameter):
        return nn.Parameter(value, requires_grad=requires_grad)
    return value.requires_grad_(requires_grad)


def _orthonormal(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """A rows×cols matrix with orthonormal rows (rows <= cols) or columns (rows > cols)."""
    g = torch.randn(max(rows, cols), min(rows, cols), device=like.device, dtype=torch.float32)
    q, _ = torch.linalg.qr(g)  # orthonormal columns
    q = q if rows >= cols else q.T
    return q.to(like.dtype)


def _swap_in_optimizer(optimizers, old: nn.Parameter, new: nn.Parameter, slice_state) -> None:
    """Replace `old` by `new` in the optimizers' groups and move its state, sliced.

    `optimizers`: None, one optimizer, or a list (the main one and the gates' one).
    """
    if optimizers is None:
        return
    for optimizer in optimizers if isinstance(optimizers, (list, tuple)) else [optimizers]:
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        for group in inner.param_groups:
            group["params"] = [new if q is old else q for q in group["params"]]
        if old in inner.state:
            inner.state[new] = {k: slice_state(v) for k, v in inner.state.pop(old).items()}


def move_in_place(leaf: torch.Tensor, fn) -> None:
    """Apply a module `_apply` function (`.to()`, `.half()`, ...) to an unregistered leaf tensor in
    place (its .data), so an optimizer holding the tensor keeps pointing at it."""
    with torch.no_grad():
        moved = fn(leaf)
    if moved is not leaf:
        leaf.data = moved
