"""Attach adapters to a transformers model by module role, and operate on all of them at once.

Roles (query, key, value, attention output, FFN in, FFN out) are mapped to module names per
architecture. GPT-2 fuses query/key/value in one `c_attn` matrix, so any of those roles adapts it;
Llama's FFN input is two matrices (gate_proj, up_proj), both adapted for `ffn_in`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn

from salora.config import ROLES, AdapterConfig
from salora.gates import HardConcrete
from salora.layer import AdaptedLinear, component_scales
from salora.pool import NAME as POOL_NAME, ComponentPool
from salora.stacks import StackPlan, stack_weights
from salora.errors import SaloraError

_BERT_LIKE = {
    "query": r"attention\.self\.query",
    "key": r"attention\.self\.key",
    "value": r"attention\.self\.value",
    "attn_out": r"attention\.output\.dense",
    "ffn_in": r"intermediate\.dense",
    "ffn_out": r"layer\.\d+\.output\.dense",
}
_LLAMA_LIKE = {
    "query": r"self_attn\.q_proj",
    "key": r"self_attn\.k_proj",
    "value": r"self_attn\.v_proj",
    "attn_out": r"self_attn\.o_proj",
    "ffn_in": r"mlp\.(gate_proj|up_proj)",
    "ffn_out": r"mlp\.down_proj",
}
ROLE_PATTERNS: dict[str, dict[str, str]] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "deberta-v2": {**_BERT_LIKE, "query": r"attention\.self\.query_proj",
                   "key": r"attention\.self\.key_proj", "value": r"attention\.self\.value_proj"},
    "gpt2": {"query": r"attn\.c_attn", "key": r"attn\.c_attn", "value": r"attn\.c_attn",
             "attn_out": r"attn\.c_proj", "ffn_in": r"mlp\.c_fc", "ffn_out": r"mlp\.c_proj"},
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
}


@dataclass
class AdaptedModule:
    name: str
    role: str  # one of ROLES, or "custom" for explicit target_modules
    layer_index: int  # transformer block index (-1 if none)
    module: AdaptedLinear


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]


def _matches(name: str, pattern: str) -> bool:
    return re.search(rf"(^|\.)(?:{pattern})$", name) is not None


def find_targets(model: nn.Module, cfg: AdapterConfig) -> list[tuple[str, str]]:
    """[(module name, role)] of the linear layers to adapt, in model order."""
    linears = _linear_names(model)
    if cfg.target_modules:
        found = [(n, "custom") for n in linears if any(_matches(n, p) for p in cfg.target_modules)]
        missing = [p for p in cfg.target_modules if not any(_matches(n, p) for n in linears)]
        if missing:
            raise SaloraError(f"target module(s) {missing} match no linear layer; "
                              f"the model's linear layers are: {_summarise(linears)}")
        return found
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    patterns = ROLE_PATTERNS.get(model_type)
    if patterns is None:
        raise SaloraError(f"no role map for model type '{model_type}'; pass explicit target_modules "
                          f"(regexes) from the model's linear layers: {_summarise(linears)}")
    found = []
    for n in linears:
        roles = [r for r in ROLES if r in cfg.target_roles and _matches(n, patterns[r])]
        if roles:
            found.append((n, roles[0]))
    if not found:
        raise SaloraError(f"roles {cfg.target_roles} match no linear layer of this {model_type} "
                          f"model; its linear layers are: {_summarise(linears)}")
    return found


def _summarise(names: list[str], limit: int = 40) -> str:
    """Layer names with block indices collapsed, so the list stays readable in one line."""
    uniq = list(dict.fromkeys(re.sub(r"\.\d+\.", ".N.", n) for n in names))
    shown = ", ".join(uniq[:limit])
    return shown + (f", … ({len(uniq) - limit} more)" if len(uniq) > limit else "")


def layer_index(name: str) -> int:
    m = re.search(r"\.(\d+)\.", f".{name}.")
    return int(m.group(1)) if m else -1


class AdapterSet:
    """All adapted matrices of one model, with the operations the method needs on them together."""

    def __init__(self, model: nn.Module, cfg: AdapterConfig, modules: list[AdaptedModule]):
        self.model = model
        self.cfg = cfg
        self.modules = modules
        self.pool: ComponentPool | None = None
        self._per_layer = False  # whether the last forward's scales were set layer by layer
        # training forwards stack A and B by shape, fold the gate scales into A's stacks, and the
        # layers compute with views (salora.stacks); False: each layer scales its own A (the same
        # numbers, more ops: tests compare the two)
        self.stack_in_forward = True
        self._stack_plan: StackPlan | None = None
        if cfg.gated:
            # every λ in one flat parameter, every log α in one flat leaf (salora.pool)
            layers = [m.module for m in modules]
            self.pool = ComponentPool(layers)
            model.add_module(POOL_NAME, self.pool)
            for slot, layer in enumerate(layers):
                layer.pool_into(self.pool, slot)
            self.gates = layers[0].gates
            # Batch the gate computation of all layers (and, if asked, the stacking of A and B) once
            # per model forward; clear it after, even on error, so a later direct call of a
            # submodule never sees stale gates or weights.
            self._hooks = (model.register_forward_pre_hook(self._before_forward),
                           model.register_forward_hook(self._after_forward, always_call=True))

    def _before_forward(self, module, args) -> None:
        layers = [m.module for m in self.modules]
        modes = {layer.stochastic for layer in layers}
        if len(modes) > 1:  # layers in different modes (rare): the general, per-mode path
            for layer, coef in zip(layers, component_scales(layers)):
                layer._coef = coef
            self._per_layer = True
            return
        pool = self.pool
        z = self.gates.sample(pool.log_alpha) if modes.pop() else self.gates.deterministic(pool.log_alpha)
        coef = pool.lora_lambda * z * layers[0].scaling  # one scale: every layer has alpha / r_init
        if self.stack_in_forward and module.training and torch.is_grad_enabled():
            # the layers compute with views of A's stacks, scaled by coef (salora.stacks)
            pool.stacks = stack_weights(layers, self._stack_plan, coef)  # a new plan once ranks change
            self._stack_plan = pool.stacks.plan
        else:
            pool.coefs = coef.split(pool.ranks)

    def _after_forward(self, module, args, output) -> None:
        self.pool.coefs = None
        self.pool.stacks = None
        if self._per_layer:
            self._per_layer = False
            for m in self.modules:
                m.module._coef = None

    def __iter__(self):
        return iter(m.module for m in self.modules)

    def __len__(self) -> int:
        return len(self.modules)

    # ---------------------------------------------------------------- ranks
    def ranks(self) -> dict[str, int]:
        return {m.name: m.module.rank for m in self.modules}

    def total_rank(self) -> int:
        return sum(m.module.rank for m in self.modules)

    def budget_total(self) -> int:
        """The budget as a whole number of components over all adapted matrices."""
        return int(self.cfg.budget_rank() * len(self) + 1e-9)

    def expected_rank_avg(self) -> torch.Tensor:
        """Differentiable average expected rank per adapted matrix (rank-0 matrices count 0)."""
        if self.pool is None:  # LoRA: every matrix has its full rank
            return torch.tensor(float(self.total_rank()) / len(self))
        # one sigmoid over all gates, the pool's flat tensor (per-op overhead dominates)
        return self.gates.prob_open(self.pool.log_alpha).sum() / len(self)

    def open_rank_avg(self) -> float:
        """Components whose deterministic gate is open (ẑ > 0), per matrix: the rank the model has
        once closed components are removed (ungated matrices count their full rank)."""
        return float(self.open_rank_avg_tensor())

    def open_rank_avg_tensor(self) -> torch.Tensor:
        """The same as a 0-dim float64 tensor on the gates' device: no device sync (the step's use)."""
        if self.pool is None:
            return torch.tensor(float(self.total_rank()) / len(self), dtype=torch.float64)
        is_open = self.pool.log_alpha.detach() > self.gates.closed_threshold()
        return torch.count_nonzero(is_open).double() / len(self)

    @torch.no_grad()
    def push_marginal(self, keep_total: int, amount) -> torch.Tensor:
        """Lower log α by `amount` (a float or 0-dim tensor) on the open components beyond the
        `keep_total` largest.

        The ranked budget push (see budget.py): only the components that must close for the open
        count to meet its target move, the least defended first. Returns how many were selected (each
        moved by `amount`, so by 0 when it is 0 or below), as a 0-dim tensor. Nothing here waits for the device: the count stays a tensor and a pressure of
        0 or below adds 0, which leaves log α exactly as it was.
        """
        if self.pool is None or not self.pool.log_alpha.numel():
            return torch.tensor(0)
        log_alpha = self.pool.log_alpha
        is_open = log_alpha > self.gates.closed_threshold()
        excess = torch.count_nonzero(is_open) - keep_total
        # open components in increasing log α; closed ones sort last (+inf) and are never chosen
        order = torch.argsort(torch.where(is_open, log_alpha, torch.inf), stable=True)
        positions, zero = self._push_constants(log_alpha)
        chosen = positions < excess
        amount = torch.as_tensor(amount).to(log_alpha).clamp(min=0.0)
        # all layers at once (their log α are views of this one tensor); x + (−a) is exactly x − a
        log_alpha.scatter_add_(0, order, torch.where(chosen, -amount, zero))
        return excess.clamp(min=0)

    def _push_constants(self, log_alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """0 .. n−1 and a 0, kept between steps (rebuilt only when components are removed): two
        tensors fewer to build at every step."""
        n, device = log_alpha.numel(), log_alpha.device
        cached = getattr(self, "_push_cache", None)
        if cached is None or cached[0].numel() != n or cached[0].device != device or cached[1].dtype != log_alpha.dtype:
            self._push_cache = cached = (torch.arange(n, device=device), log_alpha.new_zeros(()))
        return cached

    def stats(self) -> list[dict]:
        """Per-module rank and gate statistics; cheap (a few tiny reductions per module)."""
        rows = []
        with torch.no_grad():
            for m in self.modules:
                layer = m.module
                row = {"name": m.name, "role": m.role, "layer": m.layer_index,
                       "rank": layer.rank, "r_init": layer.r_init}
                if layer.gated and layer.rank:
                    row["expected_rank"] = float(layer.expected_rank())
                    row["mean_gate"] = float(layer.gates.deterministic(layer.log_alpha).mean())
                    row["mean_abs_lambda"] = float(layer.lora_lambda.abs().mean())
                rows.append(row)
        return rows

    # -------------------------------------------------------------- removal
    def gate_parameters(self) -> list[torch.Tensor]:
        """The gates' log α: the pool's one flat leaf tensor (not a registered parameter: see
        salora.layer); empty for LoRA."""
        return [] if self.pool is None else [self.pool.log_alpha]

    def remove_closed(self, optimizer=None) -> int:
        """Physically remove every component whose deterministic gate is 0; returns how many."""
        if self.pool is None:
            return 0
        closed = (self.gates.deterministic(self.pool.log_alpha.detach()) == 0).cpu()  # one transfer
        if not bool(closed.any()):
            return 0
        keeps = {slot: torch.nonzero(~part).flatten()
                 for slot, part in enumerate(closed.split(self.pool.ranks)) if bool(part.any())}
        self._keep(keeps, optimizer)
        return int(closed.sum())

    def _keep(self, keeps: dict[int, torch.Tensor], optimizer) -> None:
        """Keep components `keeps[slot]` of layer `slot`: each layer's A and B, then the pool once."""
        for slot, keep in keeps.items():
            self.modules[slot].module.keep_own_components(keep, optimizer)
        self.pool.keep(keeps, optimizer)

    def project_to_budget(self, optimizer=None) -> int:
        """Keep at most budget_total components overall: the ones with the largest log α.

        Used once, when the structure freezes: the expected-rank constraint holds ŝ at the budget,
        but a half-open gate counts < 1 in ŝ and a whole rank after removal.
        """
        keep_n = self.budget_total()
        if self.pool is None or self.total_rank() <= keep_n:
            return 0
        ranks = self.pool.ranks
        scores = self.pool.log_alpha.detach().float().cpu()
        owner = torch.cat([torch.full((r,), i) for i, r in enumerate(ranks)])
        local = torch.cat([torch.arange(r) for r in ranks])
        order = torch.argsort(scores, descending=True, stable=True)[:keep_n]
        keeps = {}
        for i, r in enumerate(ranks):
            keep = torch.sort(local[order[owner[order] == i]]).values
            if keep.numel() < r:
                keeps[i] = keep
        removed = self.total_rank() - len(order)
        self._keep(keeps, optimizer)
        return removed

    def freeze_structure(self) -> None:
        """Gates become deterministic and fixed; the rest of training tunes A, B and λ only."""
        if self.pool is None:
            return
        for layer in self:
            layer.structure_frozen = True
        self.pool.log_alpha.requires_grad_(False)
        self.pool.log_alpha.grad = None

    @property
    def structure_frozen(self) -> bool:
        return any(layer.structure_frozen for layer in self)

    # ---------------------------------------------------------------- merge
    def merge(self) -> None:
        for layer in self:
            layer.merge()

    def unmerge(self) -> None:
        for layer in self:
            layer.unmerge()

    # ------------------------------------------------------------ optimizer
    def parameter_groups(self, lr: float, weight_decay: float = 0.0,
                         extra: list[nn.Parameter] | None = None) -> list[dict]:
        """Groups for the main optimizer: A, B and λ, plus extra trainables (e.g. a new head).

        The gates (log α) are not here: salora.tuner.SaLoRA steps them with their own optimizer.
        """
        main = []
        for layer in self:
            main += [layer.lora_A, layer.lora_B]
        if self.pool is not None:
            main.append(self.pool.lora_lambda)  # every layer's λ, one tensor
        groups = [{"params": main, "lr": lr, "weight_decay": weight_decay, "name": "adapters"}]
        if extra:
            groups.append({"params": extra, "lr": lr, "weight_decay": weight_decay, "name": "extra"})
        return groups

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.modules:
            for pname, (p, _) in m.module.adapter_parameters().items():
                out[f"{m.name}.{pname}"] = p.detach()
        return out


def attach_adapters(model: nn.Module, cfg: AdapterConfig, modules_to_save: list[str] | None = None) -> AdapterSet:
    """Wrap the target linear layers of `model` in place and freeze everything else.

    `modules_to_save`: names (suffixes) of modules that stay fully trainable, e.g. a new classifier.
    """
    targets = find_targets(model, cfg)
    gates = HardConcrete(cfg.gate_temperature, cfg.gate_low, cfg.gate_high) if cfg.gated else None
    for p in model.parameters():
        p.requires_grad_(False)
    adapted = []
    for name, role in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        layer = AdaptedLinear(base, cfg.r_init, cfg.alpha, cfg.dropout, gates, cfg.gate_init_log_alpha,
                              init=cfg.init)
        layer.train(base.training)  # a new module starts in train mode; follow the model's mode
        setattr(parent, child, layer)
        adapted.append(AdaptedModule(name, role, layer_index(name), layer))
    for name, module in model.named_modules():
        if modules_to_save and any(_matches(name, re.escape(s)) for s in modules_to_save):
            for p in module.parameters():
                p.requires_grad_(True)
    return AdapterSet(model, cfg, adapted)


def extra_trainable_parameters(model: nn.Module, adapters: AdapterSet) -> list[nn.Parameter]:
    """Trainable parameters that are not adapter parameters (e.g. a new classification head)."""
    own = {id(p) for layer in adapters for p, _ in layer.adapter_parameters().values()}
    if adapters.pool is not None:
        own.add(id(adapters.pool.lora_lambda))
    return [p for p in model.parameters() if p.requires_grad and id(p) not in own]
