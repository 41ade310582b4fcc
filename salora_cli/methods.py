"""Fine-tuning methods behind one interface, so every comparison runs through the same loop.

- salora: gated adapters with a learned rank under a budget (salora_cli.adapters)
- lora:   the same layer without gates: fixed rank (the fair baseline: same code path)
- adalora: peft's AdaLoRA, driven as its docs require (update_and_allocate every step,
           after optimizer.step() and before zero_grad())
- full:   every weight trains
- bitfit: biases (and the new task head) train
A new classification head (`classifier` / `score`, as peft's SEQ_CLS) always trains.
"""
from __future__ import annotations

from pathlib import Path
import torch
import torch.nn as nn

from salora_cli.adapters import AdapterSet, MethodHooks, attach, load_adapter, save_adapter
from salora_cli.adapters.io import load_tensors, save_tensors
from salora_cli.adapters.model import extra_trainable_parameters, find_targets
from salora_cli.config import RunConfig
from salora_cli.errors import SaloraError

HEAD_NAMES = ("classifier", "score")


def head_modules(model: nn.Module) -> list[str]:
    return [n for n in HEAD_NAMES if hasattr(model, n)]


def _params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class Method:
    """Default behaviour: nothing to regularise, nothing to prune, structure always final."""

    name = "base"

    def __init__(self, model: nn.Module, cfg: RunConfig):
        self.model = model
        self.cfg = cfg

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        return [{"params": _params(self.model), "lr": lr, "weight_decay": weight_decay}]

    def regularizer(self, step: int) -> tuple[torch.Tensor | None, dict[str, float]]:
        return None, {}

    def after_step(self, step: int, optimizer) -> dict[str, int]:
        return {}

    def finish(self, optimizer=None) -> dict[str, int]:
        return {}

    def budget_met(self, step: int) -> bool:
        """Whether a checkpoint at `step` is at the final budget (only those may be 'best')."""
        return True

    def rank_modules(self) -> list[dict] | None:
        """Per adapted matrix: name, role, layer, rank, r_init (None: not a low-rank method)."""
        return None

    def rank_point(self, step: int) -> dict | None:
        """Totals for the rank trajectory at `step`."""
        return None

    def trainable_count(self) -> int:
        return sum(p.numel() for p in _params(self.model))

    def save(self, folder: Path) -> None:
        """The trained weights, in the method's own format (used by eval / export)."""
        self.save_trainable(folder)

    def load(self, folder: Path) -> None:
        self.load_trainable(folder)

    def save_checkpoint(self, folder: Path) -> None:
        """Weights for resuming training (every method: its trainable tensors by name)."""
        self.save_trainable(folder)

    def save_trainable(self, folder: Path) -> None:
        save_tensors(folder / "trainable.safetensors",
                     {n: p for n, p in self.model.named_parameters() if p.requires_grad})

    def load_trainable(self, folder: Path) -> None:
        tensors = load_tensors(folder / "trainable.safetensors")
        try:
            unexpected = self.model.load_state_dict(tensors, strict=False).unexpected_keys
        except RuntimeError as exc:  # shape mismatch: a checkpoint of another model or method
            raise SaloraError(f"checkpoint {folder} does not fit this model ({str(exc).splitlines()[0]})") from exc
        if unexpected:
            raise SaloraError(f"checkpoint {folder} has parameters this model lacks: {unexpected[:3]}")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class FullFineTuning(Method):
    name = "full"

    def __init__(self, model, cfg):
        super().__init__(model, cfg)
        for p in model.parameters():
            p.requires_grad_(True)


class BitFit(Method):
    name = "bitfit"

    def __init__(self, model, cfg):
        super().__init__(model, cfg)
        heads = tuple(f"{h}." for h in head_modules(model))
        for n, p in model.named_parameters():
            p.requires_grad_(n.endswith(".bias") or n.startswith(heads))


class AdapterMethod(Method):
    """salora and lora: our layer, with or without gates."""

    def __init__(self, model, cfg, total_steps: int, adapters: AdapterSet | None = None):
        super().__init__(model, cfg)
        self.name = cfg.method
        self.adapters = adapters or attach(model, cfg.adapter, modules_to_save=head_modules(model))
        self.hooks = MethodHooks(self.adapters, total_steps)

    def param_groups(self, lr, weight_decay):
        extra = extra_trainable_parameters(self.model, self.adapters)
        return self.adapters.parameter_groups(lr, weight_decay, extra=extra)

    def regularizer(self, step):
        return self.hooks.regularizer(step)

    def after_step(self, step, optimizer):
        return self.hooks.after_step(step, optimizer)

    def finish(self, optimizer=None):
        return self.hooks.finish(optimizer)

    def budget_met(self, step):
        return not self.cfg.adapter.gated or self.adapters.structure_frozen

    def rank_modules(self):
        return [{"name": m.name, "role": m.role, "layer": m.layer_index, "rank": m.module.rank,
                 "r_init": m.module.r_init} for m in self.adapters.modules]

    def rank_point(self, step):
        n = len(self.adapters)
        point = {"total_rank": self.adapters.total_rank()}
        if self.hooks.controller is None:
            return point
        point["target_total"] = self.hooks.controller.target(step) * n
        point["removed_by_gates"] = self.hooks.removed["gates"]
        point["removed_by_projection"] = self.hooks.removed["projection"]
        if self.hooks.active:  # once frozen, gates are fixed at ẑ: only the count matters
            point["expected_rank_total"] = float(self.adapters.expected_rank_avg().detach()) * n
            point["open_rank_total"] = self.adapters.open_rank_avg() * n
        return point

    def save(self, folder):
        save_adapter(self.model, self.adapters, folder)

    save_checkpoint = save  # the adapter format keeps the learned shapes

    def state_dict(self):
        return self.hooks.state_dict()

    def load_state_dict(self, state):
        self.hooks.load_state_dict(state)


class AdaLoRA(Method):
    name = "adalora"

    def __init__(self, model, cfg, total_steps: int, peft_model: nn.Module | None = None,
                 targets: list[tuple[str, str]] | None = None):
        from peft import AdaLoraConfig, get_peft_model

        a = cfg.adapter
        self.targets = targets or find_targets(model, a)
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

    def after_step(self, step, optimizer):
        self.model.base_model.update_and_allocate(step)
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
                out[key] = (int((e["default"] != 0).sum()), e["default"].shape[0])
        return out

    def rank_modules(self):
        from salora_cli.adapters.model import _layer_index

        return [{"name": n, "role": self.roles.get(n, "custom"), "layer": _layer_index(n),
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


def build_method(model: nn.Module, cfg: RunConfig, total_steps: int) -> Method:
    if cfg.method in ("salora", "lora"):
        return AdapterMethod(model, cfg, total_steps)
    if cfg.method == "adalora":
        return AdaLoRA(model, cfg, total_steps)
    if cfg.method == "full":
        return FullFineTuning(model, cfg)
    if cfg.method == "bitfit":
        return BitFit(model, cfg)
    raise SaloraError(f"unknown method '{cfg.method}'")


def resume_method(model: nn.Module, cfg: RunConfig, total_steps: int, folder: Path) -> Method:
    """The method as it was at a checkpoint: weights (and, for adapters, their learned shapes)."""
    if cfg.method in ("salora", "lora"):
        return AdapterMethod(model, cfg, total_steps, adapters=load_adapter(model, folder))
    method = build_method(model, cfg, total_steps)
    method.load_trainable(folder)
    return method


def load_method(model: nn.Module, cfg: RunConfig, folder: Path) -> Method:
    """Rebuild a trained method from a saved checkpoint folder (for eval / export)."""
    if not folder.exists():
        raise SaloraError(f"checkpoint folder missing: {folder}")
    if cfg.method in ("salora", "lora"):
        return AdapterMethod(model, cfg, 1, adapters=load_adapter(model, folder))
    if cfg.method == "adalora":
        from peft import PeftModel

        targets = find_targets(model, cfg.adapter)  # before peft renames the wrapped layers
        try:
            peft_model = PeftModel.from_pretrained(model, str(folder))
        except (OSError, ValueError, RuntimeError) as exc:
            raise SaloraError(f"could not load the AdaLoRA checkpoint at {folder}: {exc}") from exc
        return AdaLoRA(model, cfg, 1, peft_model=peft_model, targets=targets)
    method = build_method(model, cfg, 1)
    method.load(folder)
    return method
