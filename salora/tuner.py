"""`salora.attach`: SaLoRA on any transformers (or plain PyTorch) model, driven by one call per step.

    handle = salora.attach(model, salora.AdapterConfig(r_init=12, budget=8), total_steps=1000)
    optimizer = torch.optim.AdamW(handle.trainable_parameters(), lr=1e-3)
    for batch in loader:
        model(**batch).loss.backward()      # the orthogonality term is already in .loss
        optimizer.step()
        handle.step(optimizer)              # after optimizer.step(), before zero_grad()
        optimizer.zero_grad()
    handle.finish(optimizer)

What `step` does, in order: the gates take their Adam step on the task gradient (own optimizer,
constant rate); the budget pushes the marginal gates down (salora.budget); the multiplier takes
its ascent step; every `prune_every` steps (more often in short runs: AdapterConfig.ramp_removals)
closed components are removed, their rows sliced out of
the parameters AND out of `optimizer`'s state (so pass the optimizer that steps the adapters); at
`freeze_at` the structure freezes. Removals are counted by cause: "gates" (a gate closed during
training) and "projection" (the freeze trims whatever the gates left above the budget).

Design points a user relies on:
- The gates (log α) are not registered parameters (salora.layer): `model.parameters()` never
  holds them, whatever optimizer the user builds, so they are stepped once, by `step`.
- The regulariser joins the loss inside the model's forward (a forward hook, as peft's AdaLoRA adds
  its orthogonality term inside its forward), on training forwards whose output has a `.loss`.
  A model that returns no `.loss` gets `handle.regularizer()` to add by hand.
- Under DDP the gates' gradients are averaged here (DDP only averages registered parameters), and
  after a step that removed components the caller must rebuild its DDP wrapper (the reducer was
  built for the old shapes): `step` returns {"removed": n, ...} so the caller knows when.
Plain LoRA (config.method "lora") uses the same class; it has no gates and `step` does nothing.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from salora.budget import BudgetController, orthogonality_penalty
from salora.config import AdapterConfig
from salora.io import export_peft, load_adapter, save_adapter
from salora.model import AdapterSet, attach_adapters, extra_trainable_parameters


def attach(model: nn.Module, config: AdapterConfig, total_steps: int | None = None,
           modules_to_save: list[str] | None = None) -> "SaLoRA":
    """Adapt `model` in place (its target linear layers; everything else frozen) and return the
    handle that trains the structure. `total_steps` (optimizer steps) sets the budget schedule;
    it may come later through `set_total_steps` (the Trainer callback does that).
    `modules_to_save`: module names that stay fully trainable, e.g. a new classifier head."""
    config.validate()
    return SaLoRA(attach_adapters(model, config, modules_to_save), total_steps)


def load(model: nn.Module, folder: str | Path, total_steps: int | None = None) -> "SaLoRA":
    """Attach adapters to `model` shaped and valued as saved in `folder` (by `SaLoRA.save`): the
    learned ranks, gates and any saved head. `total_steps` only to continue training the structure."""
    return SaLoRA(load_adapter(model, folder), total_steps)


class SaLoRA:
    """The adapters of one model and the training of their structure (see the module docstring)."""

    def __init__(self, adapters: AdapterSet, total_steps: int | None = None):
        self.adapters = adapters
        self.model = adapters.model
        self.cfg = adapters.cfg
        self.steps_done = 0
        self.controller: BudgetController | None = None
        # foreach: one kernel per op over all gate vectors (CPU defaults to a Python loop)
        self.gate_optimizer = (torch.optim.Adam(adapters.gate_parameters(), lr=self.cfg.gate_lr, foreach=True)
                               if self.cfg.gated else None)
        self.removed = {"gates": 0, "projection": 0}  # components removed so far, by cause
        # the last training forward's own loss and orthogonality term (before its weight), detached
        self.last_task_loss: torch.Tensor | None = None
        self.last_orth: torch.Tensor | None = None
        if self.cfg.gated and self.cfg.orth_reg > 0:
            # before the adapters' own after-forward hook, which drops this forward's stacks
            self._hook = self.model.register_forward_hook(self._add_regularizer, prepend=True)
        if total_steps is not None:
            self.set_total_steps(total_steps)

    def set_total_steps(self, total_steps: int) -> None:
        """The number of optimizer steps training will take (the budget schedule's time axis)."""
        if self.cfg.gated:
            self.controller = BudgetController(self.cfg, total_steps)
        self.total_steps = total_steps

    # --------------------------------------------------------------- loss
    def regularizer(self) -> torch.Tensor | None:
        """orth_reg × the orthogonality penalty (None for LoRA, or with orth_reg 0)."""
        if not self.cfg.gated or self.cfg.orth_reg <= 0:
            return None
        orth = orthogonality_penalty(self.adapters, self.cfg.orth_form)
        return None if orth is None else self.cfg.orth_reg * orth

    def _add_regularizer(self, module, args, output):
        loss = getattr(output, "loss", None)
        if not (module.training and torch.is_grad_enabled() and torch.is_tensor(loss)):
            return None
        self.last_task_loss, self.last_orth = loss.detach(), None
        every = self.cfg.orth_every  # lazy: the term on every k-th step (of the step count kept for resume)
        if (self.steps_done + 1) % every:
            return output
        orth = orthogonality_penalty(self.adapters, self.cfg.orth_form, stacks=self.adapters.pool.stacks)
        if orth is not None:
            self.last_orth = orth.detach()
            # ModelOutput keeps key and attribute in step; every = 1 multiplies by exactly 1.0
            output.loss = loss + (self.cfg.orth_reg * every) * orth
        return output

    # ------------------------------------------------------------- training
    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the user's optimizer should step: A, B, λ and any module kept trainable (a head)."""
        return [p for group in self.parameter_groups(0.0) for p in group["params"]]

    def parameter_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict]:
        """The same, as optimizer groups ("adapters", "extra"), for per-group settings."""
        return self.adapters.parameter_groups(lr, weight_decay,
                                              extra=extra_trainable_parameters(self.model, self.adapters))

    @property
    def active(self) -> bool:
        """True while the structure is still being learned."""
        return self.controller is not None and not self.adapters.structure_frozen

    def log_values(self, step: int | None = None) -> dict[str, float]:
        """Budget state for a log line at `step` (default: the next step): expected and open rank,
        target, multiplier, Lagrangian term. Empty once the structure is frozen."""
        if not self.active:
            return {}
        step = self.steps_done + 1 if step is None else step
        target, open_rank = self.controller.target(step), self.adapters.open_rank_avg()
        with torch.no_grad():  # ŝ of the gates as they are now, after the last step's push
            expected = float(self.adapters.expected_rank_avg())
        multiplier = float(self.controller.state.multiplier)
        # the constrained quantity: open count (ranked push) or ŝ (uniform push)
        measured = open_rank if self.cfg.budget_push == "ranked" else expected
        return {"expected_rank": expected, "open_rank": open_rank, "target_rank": target,
                "multiplier": multiplier, "lagrangian": multiplier * (measured - target)}

    def _optimizers(self, optimizer) -> list:
        return [o for o in (optimizer, self.gate_optimizer) if o is not None]

    def step(self, optimizer=None) -> dict[str, int]:
        """Call once per optimizer step, right after `optimizer.step()` and before anything zeroes
        the gradients (`optimizer.zero_grad()`, Trainer's `model.zero_grad()`): the gates learn
        from the gradient of the backward that step used. Pass the optimizer that steps the
        adapters, so removed components leave its state too. Returns the events of this step
        ({"removed": n, "removed_by_gates": n, "removed_by_projection": n, "frozen": 1}, only those
        that happened)."""
        if self.cfg.gated and self.controller is None:
            raise RuntimeError("SaLoRA.step needs the schedule: attach(..., total_steps=N) or set_total_steps(N)")
        self.steps_done += 1
        step = self.steps_done
        if not self.active:
            return {}
        self._average_gate_gradients()
        self.gate_optimizer.step()  # the task's say on each gate
        self.gate_optimizer.zero_grad(set_to_none=True)
        ranked = self.cfg.budget_push == "ranked"
        # the ranked push aims at the target of the next removal step (BudgetController.aim)
        aim = self.controller.aim(step) if ranked else step
        # Nothing below waits for the device: counts, the multiplier and the push stay tensors
        # (0-dim, float64 for the multiplier's arithmetic) unless this step removes components.
        with torch.no_grad():  # the budget's say, decoupled from the gates' Adam
            if ranked:
                measured = self.adapters.open_rank_avg_tensor()
                mu = self.controller.pressure(measured, aim)
                keep = int(self.controller.target(aim) * len(self.adapters) + 1e-9)
                self.adapters.push_marginal(keep, self.cfg.gate_lr * mu)
            else:  # uniform: the same push on every open gate, on the expected rank
                measured = self.adapters.expected_rank_avg().double()
                mu = self.controller.pressure(measured, aim)
                for gates in self.adapters.gate_parameters():
                    gates.sub_((self.cfg.gate_lr * mu).to(gates.dtype))
        self.controller.ascend(measured, aim)
        events = {}
        freeze = self.controller.should_freeze(step)
        if self.controller.removes_at(step) or freeze:
            events.update(self._remove_closed(optimizer))
        if freeze:
            events = _add(events, self._freeze(optimizer))
        return events

    def _average_gate_gradients(self) -> None:
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        gates = [g for g in self.adapters.gate_parameters() if g.numel()]
        if not gates:
            return
        flat = torch.cat([(g.grad if g.grad is not None else torch.zeros_like(g)).flatten() for g in gates])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for g, part in zip(gates, flat.split([g.numel() for g in gates])):
            g.grad = part.view_as(g).clone()

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

    # ------------------------------------------------------- files, merge
    def save(self, folder: str | Path, metadata: dict | None = None) -> None:
        """Our format: safetensors + salora_adapter.json, with gates, λ and each learned rank."""
        save_adapter(self.model, self.adapters, folder, metadata)

    def export_peft(self, folder: str | Path, base_model_name_or_path: str | None = None) -> dict[str, int]:
        """A plain peft LoRA adapter (scale, λ and gates folded into B; a rank per module)."""
        return export_peft(self.model, self.adapters, folder, base_model_name_or_path)

    def merge(self) -> None:
        """Fold every update into its base weight (inference at the base model's cost)."""
        self.adapters.merge()

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything besides the weights needed to resume exactly (multiplier, gates' Adam, counts)."""
        if self.controller is None:
            return {}
        return {"controller": self.controller.state_dict(),
                "removed": dict(self.removed), "steps_done": self.steps_done,
                "gate_optimizer": self.gate_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.controller is None or not state:
            return
        self.controller.load_state_dict(state["controller"])
        self.removed = dict(state.get("removed", self.removed))
        self.steps_done = state.get("steps_done", self.steps_done)
        self.gate_optimizer.load_state_dict(state["gate_optimizer"])


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Merge two event dicts, summing the counts they share."""
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}
