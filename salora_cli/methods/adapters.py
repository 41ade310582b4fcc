"""SaLoRA and LoRA: the `salora` library's layer with gates (salora: learned rank under a budget) or
without (lora: fixed rank, the fair baseline on the same code path)."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from salora import SaLoRA, attach, load_adapter
from salora_cli.core.config import RunConfig
from salora_cli.methods.base import Method, head_modules


class AdapterMethod(Method):
    """salora and lora: our layer, with or without gates."""

    def __init__(self, model, cfg, total_steps: int, handle: SaLoRA | None = None):
        super().__init__(model, cfg)
        self.name = cfg.method
        self.handle = handle or attach(model, cfg.adapter, total_steps, modules_to_save=head_modules(model))
        if handle is not None:
            handle.set_total_steps(total_steps)
        self.adapters = self.handle.adapters

    @classmethod
    def create(cls, model: nn.Module, cfg: RunConfig, total_steps: int) -> "AdapterMethod":
        return cls(model, cfg, total_steps)

    @classmethod
    def resume(cls, model, cfg, total_steps, folder: Path) -> "AdapterMethod":
        # the adapter format keeps the learned shapes: attach as saved, then continue
        return cls(model, cfg, total_steps, handle=SaLoRA(load_adapter(model, folder)))

    @classmethod
    def from_saved(cls, model, cfg, folder: Path) -> "AdapterMethod":
        return cls(model, cfg, 1, handle=SaLoRA(load_adapter(model, folder)))

    def param_groups(self, lr, weight_decay):
        return self.handle.parameter_groups(lr, weight_decay)

    def trainable_count(self):
        # the gates are trained too (by the handle, not the main optimizer), while not frozen
        return super().trainable_count() + sum(g.numel() for g in self.adapters.gate_parameters() if g.requires_grad)

    def log_values(self, step):
        return self.handle.log_values(step)

    def task_loss(self, loss):
        h = self.handle
        if h.last_task_loss is None:  # no regulariser in this forward (LoRA, or orth_reg 0)
            return loss, {}
        task, orth = h.last_task_loss, h.last_orth
        h.last_task_loss = h.last_orth = None  # each forward's own: never reused by a later one
        return task, ({} if orth is None else {"orth": orth})  # read (float) only where the step logs

    def after_step(self, step, optimizer):
        self.handle.steps_done = step - 1  # the loop's count is the truth (e.g. a checkpoint without the handle's)
        return self.handle.step(optimizer)

    def finish(self, optimizer=None):
        return self.handle.finish(optimizer)

    def budget_met(self, step):
        return not self.cfg.adapter.gated or self.adapters.structure_frozen

    def rank_modules(self):
        return [{"name": m.name, "role": m.role, "layer": m.layer_index, "rank": m.module.rank,
                 "r_init": m.module.r_init} for m in self.adapters.modules]

    def rank_point(self, step):
        n = len(self.adapters)
        point = {"total_rank": self.adapters.total_rank()}
        if self.handle.controller is None:
            return point
        point["target_total"] = self.handle.controller.target(step) * n
        point["removed_by_gates"] = self.handle.removed["gates"]
        point["removed_by_projection"] = self.handle.removed["projection"]
        if self.handle.active:  # once frozen, gates are fixed at ẑ: only the count matters
            point["expected_rank_total"] = float(self.adapters.expected_rank_avg().detach()) * n
            point["open_rank_total"] = self.adapters.open_rank_avg() * n
        return point

    def save(self, folder):
        self.handle.save(folder)

    save_checkpoint = save  # the adapter format keeps the learned shapes

    def state_dict(self):
        return self.handle.state_dict()

    def load_state_dict(self, state):
        self.handle.load_state_dict(state)
