"""SaLoRA as a library: config / gates / layer / budget / model / hooks / io (peft's tuner split)."""
from salora_cli.adapters.config import ROLES, AdapterConfig
from salora_cli.adapters.hooks import MethodHooks
from salora_cli.adapters.io import export_peft, load_adapter, save_adapter
from salora_cli.adapters.model import AdapterSet, attach

__all__ = ["ROLES", "AdapterConfig", "AdapterSet", "MethodHooks", "attach", "export_peft",
           "load_adapter", "save_adapter"]
