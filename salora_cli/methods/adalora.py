"""peft's AdaLoRA, driven as its docs require: `update_and_allocate` every step, after
`optimizer.step()` and before `zero_grad()`."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from salora.model import find_targets, layer_index
from salora_cli.core.config import RunConfig
from salora_cli.core.errors import SaloraError
from salora_cli.methods.base import Method, head_modules


class AdaLoRA(Method):
    name = "adalora"

    def __init__(self, model, cfg, total_steps: int, peft_model: nn.Module | None = None,
                 targets: list[tuple[str, str]] | None = None):
        from peft import AdaLoraConfig, get_peft_model

        a = cfg.adapter
        self.targets = targets or find_targets(model, a)
        # peft starts every singular value E at 0, and its allocator prunes by setting E to 0: a zero
        # counts as pruned only once the weights have been stepped (a trained adapter from from_saved is)
        self.stepped = peft_model is not None
        if peft_model is None:
            tinit = int(a.ramp_start * total_steps)
            tfinal = int((1.0 - a.ramp_end) * total_steps)
            if total_steps - tfinal <= tinit:
                raise SaloraError(f"adalora needs ramp_start < ramp_end and more steps ({total_steps})")
            peft_cfg = AdaLoraConfig(
                init_r=a.r_init, target_r=int(round(a.budget_rank())), lora_alpha=a.alpha,
                lora_dropout=a.dropout, tinit=tinit, tfinal=tfinal, deltaT=1,
                total_step=total_steps, orth_reg_weight=a.orth_reg,
                target_modules=[n for n, _ in self.targets],
                modules_to_save=head_modules(model) or None)
            peft_model = get_peft_model(model, peft_cfg)
        super().__init__(peft_model, cfg)
        self.roles = dict(self.targets)

    @classmethod
    def create(cls, model: nn.Module, cfg: RunConfig, total_steps: int) -> "AdaLoRA":
        return cls(model, cfg, total_steps)

    @classmethod
    def from_saved(cls, model: nn.Module, cfg: RunConfig, folder: Path) -> "AdaLoRA":
        from peft import PeftModel

        targets = find_targets(model, cfg.adapter)  # before peft renames the wrapped layers
        try:
            peft_model = PeftModel.from_pretrained(model, str(folder))
        except (OSError, ValueError, RuntimeError) as exc:
            raise SaloraError(f"could not load the AdaLoRA checkpoint at {folder}: {exc}") from exc
        return cls(model, cfg, 1, peft_model=peft_model, targets=targets)

    @classmethod
    def resume(cls, model, cfg, total_steps, folder):
        method = super().resume(model, cfg, total_steps, folder)
        method.stepped = True
        return method

    def after_step(self, step, optimizer):
        self.model.base_model.update_and_allocate(step)
        self.stepped = True
        return {}

    def budget_met(self, step):
        c = next(iter(self.model.peft_config.values()))
        return step >= c.total_step - c.tfinal

    def _ranks(self) -> dict[str, tuple[int, int]]:
        out = {}
        for name, module in self.model.named_modules():
            e = getattr(module, "lora_E", None)
            if isinstance(e, nn.ParameterDict) and "default" in e:
                key = name.removeprefix("base_model.model.")
                r_init = e["default"].shape[0]
                out[key] = (int((e["default"] != 0).sum()) if self.stepped else r_init, r_init)
        return out

    def rank_modules(self):
        return [{"name": n, "role": self.roles.get(n, "custom"), "layer": layer_index(n),
                 "rank": r, "r_init": r0} for n, (r, r0) in self._ranks().items()]

    def rank_point(self, step):
        return {"total_rank": sum(r for r, _ in self._ranks().values())}

    def save(self, folder):
        self.model.save_pretrained(str(folder))

    def state_dict(self):
        # the allocator's importance averages and the allocation so far
        allocator = self.model.base_model.rankallocator
        config = next(iter(self.model.peft_config.values()))
        return {"ipt": allocator.exp_avg_ipt, "unc": allocator.exp_avg_unc,
                "rank_pattern": config.rank_pattern}

    def load_state_dict(self, state):
        allocator = self.model.base_model.rankallocator
        allocator.exp_avg_ipt, allocator.exp_avg_unc = state["ipt"], state["unc"]
        next(iter(self.model.peft_config.values())).rank_pattern = state["rank_pattern"]
