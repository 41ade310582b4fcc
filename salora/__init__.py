"""SaLoRA (structure-aware low-rank adaptation) as a library: attach it to a model, call
`handle.step(optimizer)` after each optimizer step, save or export to plain peft.

    import salora
    handle = salora.attach(model, salora.AdapterConfig(r_init=12, budget=8), total_steps=1000)

The pieces, as peft splits a tuner: config (AdapterConfig), gates (hard-concrete), layer
(AdaptedLinear), model (attaching by role, operations on all adapters), budget (schedule,
multiplier, orthogonality), tuner (the per-step handle), io (save / load / peft export), and
integrations.transformers (a `transformers.Trainer` callback). Nothing here imports the runner
(salora_cli).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.3.0"

# Public name -> the submodule that defines it. They are imported on first use (PEP 562), so
# `import salora.config` (the CLI's flags and help) stays free of torch.
_EXPORTS = {
    "ROLES": "salora.config", "AdapterConfig": "salora.config", "SaloraError": "salora.errors",
    "export_peft": "salora.io", "load_adapter": "salora.io", "save_adapter": "salora.io",
    "AdapterSet": "salora.model", "SaLoRA": "salora.tuner", "attach": "salora.tuner", "load": "salora.tuner",
}

__all__ = ["ROLES", "AdapterConfig", "AdapterSet", "SaLoRA", "SaloraError", "attach", "export_peft", "load",
           "load_adapter", "save_adapter"]

if TYPE_CHECKING:  # for type checkers and IDEs: the names as eager imports
    from salora.config import ROLES, AdapterConfig
    from salora.errors import SaloraError
    from salora.io import export_peft, load_adapter, save_adapter
    from salora.model import AdapterSet
    from salora.tuner import SaLoRA, attach, load


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'salora' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
