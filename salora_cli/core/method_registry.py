"""The method registry: each fine-tuning method's name, the module and class that implement it, and what
the protocol needs to know about it. Names only: the modules are named, not imported, so reading the
method names (config validation, `--help`) costs no torch import. `salora_cli.methods` builds a method
from its entry; the config and the grid read the entries."""
from __future__ import annotations

from dataclasses import dataclass

from salora.errors import SaloraError


@dataclass(frozen=True)
class MethodSpec:
    module: str  # where its Method subclass lives
    cls: str  # the class's name
    ranked: bool = False  # low-rank: takes the protocol's budgets and lr grid; writes ranks.json
    learns_rank: bool = False  # its rank is learned: starts at r_init, ends at the budget
    adapter_kind: str = "salora"  # the AdapterConfig.method it configures (gated layer or not)
    peft_export: bool = False  # `salora export` can write it as a plain peft LoRA adapter


REGISTRY: dict[str, MethodSpec] = {
    "salora": MethodSpec("salora_cli.methods.adapters", "AdapterMethod", ranked=True, learns_rank=True,
                         peft_export=True),
    "lora": MethodSpec("salora_cli.methods.adapters", "AdapterMethod", ranked=True, adapter_kind="lora",
                       peft_export=True),
    "adalora": MethodSpec("salora_cli.methods.adalora", "AdaLoRA", ranked=True, learns_rank=True),
    "full": MethodSpec("salora_cli.methods.full", "FullFineTuning"),
    "bitfit": MethodSpec("salora_cli.methods.bitfit", "BitFit"),
}
METHODS = tuple(REGISTRY)


def spec(name: str) -> MethodSpec:
    if name not in REGISTRY:
        raise SaloraError(f"unknown method '{name}' (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]
