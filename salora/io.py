"""Save / load adapters (safetensors + JSON), and export a plain peft LoRA adapter.

Our format (`adapter_model.safetensors` + `salora_adapter.json`) keeps gates, λ and each module's
current rank, so a pruned adapter reloads at its learned shape. The peft export folds the scale,
λ and the deterministic gates into B, one integer rank per module (rank_pattern / alpha_pattern with
alpha = rank, so peft's scale is 1) and leaves rank-0 modules out: vanilla
`peft.PeftModel.from_pretrained(base, folder).merge_and_unload()` then gives the same outputs.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from salora.files import atomic_path, write_json
from salora.config import AdapterConfig
from salora.model import AdapterSet, attach_adapters, extra_trainable_parameters
from salora.errors import SaloraError

WEIGHTS = "adapter_model.safetensors"
CONFIG = "salora_adapter.json"
EXTRA = "extra."  # prefix of trainable non-adapter parameters (e.g. a new classifier head)


def extra_state(model: nn.Module, adapters: AdapterSet) -> dict[str, torch.Tensor]:
    """Trainable parameters outside the adapters, by parameter name."""
    extra = {id(p) for p in extra_trainable_parameters(model, adapters)}
    return {n: p.detach() for n, p in model.named_parameters() if id(p) in extra}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata=metadata)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise SaloraError(f"adapter weights missing: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SaloraError(f"adapter weights file {path} is corrupted or unreadable ({exc})") from exc


def save_adapter(model: nn.Module, adapters: AdapterSet, folder: str | Path,
                 metadata: dict | None = None) -> None:
    folder = Path(folder)
    tensors = dict(adapters.adapter_state_dict())
    tensors.update({EXTRA + k: v for k, v in extra_state(model, adapters).items()})
    save_tensors(folder / WEIGHTS, tensors)
    write_json(folder / CONFIG, {
        "format": "salora-adapter/1",
        "adapter": asdict(adapters.cfg),
        "structure_frozen": adapters.structure_frozen,
        "modules": {m.name: {"role": m.role, "layer": m.layer_index, "rank": m.module.rank,
                             "r_init": m.module.r_init} for m in adapters.modules},
        "extra": sorted(extra_state(model, adapters)),
        **(metadata or {}),
    })


def read_adapter_config(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG
    if not path.exists():
        raise SaloraError(f"no adapter at {folder} ({CONFIG} missing)")
    try:
        meta = json.loads(path.read_text())
        cfg = AdapterConfig(**meta["adapter"])
        modules, extra = meta["modules"], meta.get("extra", [])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise SaloraError(f"adapter config {path} is corrupted ({exc})") from exc
    # a hand-edited or damaged file must not reach torch as a negative or non-integer shape
    if not isinstance(modules, dict):
        raise SaloraError(f"adapter config {path} is corrupted (modules is not a mapping)")
    for name, entry in modules.items():
        rank = entry.get("rank") if isinstance(entry, dict) else None
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= cfg.r_init:
            raise SaloraError(f"adapter config {path} is corrupted (module {name}: rank {rank!r} is not "
                              f"a whole number in 0..{cfg.r_init})")
    if not isinstance(extra, list) or not all(isinstance(n, str) for n in extra):
        raise SaloraError(f"adapter config {path} is corrupted (extra is not a list of parameter names)")
    return meta


def load_adapter(model: nn.Module, folder: str | Path) -> AdapterSet:
    """Attach adapters shaped as saved (ranks after removal) and load their weights."""
    folder = Path(folder)
    meta = read_adapter_config(folder)
    tensors = load_tensors(folder / WEIGHTS)
    extra_names = meta.get("extra", [])
    modules_to_save = sorted({n.rpartition(".")[0] for n in extra_names})
    adapters = attach_adapters(model, AdapterConfig(**meta["adapter"]), modules_to_save=modules_to_save)
    saved = meta["modules"]
    if set(saved) != {m.name for m in adapters.modules}:
        raise SaloraError(f"adapter at {folder} does not fit this model "
                          f"(saved modules differ from the model's target modules)")
    for m in adapters.modules:
        m.module.resize_(saved[m.name]["rank"])
        for pname, (p, _) in m.module.adapter_parameters().items():
            key = f"{m.name}.{pname}"
            if key not in tensors or tensors[key].shape != p.shape:
                raise SaloraError(f"adapter weights at {folder} are missing or misshapen for {key}")
            with torch.no_grad():
                p.copy_(tensors[key])
    params = dict(model.named_parameters())
    for name in extra_names:
        if name not in params or EXTRA + name not in tensors:
            raise SaloraError(f"adapter at {folder}: saved parameter {name} missing or unknown")
        with torch.no_grad():
            params[name].copy_(tensors[EXTRA + name])
    if meta.get("structure_frozen"):
        adapters.freeze_structure()
    return adapters


def export_peft(model: nn.Module, adapters: AdapterSet, folder: str | Path,
                base_model_name_or_path: str | None = None) -> dict[str, int]:
    """Write a standard peft LoRA adapter; returns the exported rank per module."""
    from peft import LoraConfig

    folder = Path(folder)
    ranks, tensors = {}, {}
    fan_in_fan_out = False
    with torch.no_grad():
        for m in adapters.modules:
            layer = m.module
            if layer.rank == 0:
                continue
            scale = torch.full((layer.rank,), layer.scaling, dtype=layer.lora_B.dtype,
                               device=layer.lora_B.device)
            if layer.gated:
                scale = scale * layer.lora_lambda * layer.gates.deterministic(layer.log_alpha)
            prefix = f"base_model.model.{m.name}"
            tensors[f"{prefix}.lora_A.weight"] = layer.lora_A.detach()
            tensors[f"{prefix}.lora_B.weight"] = layer.lora_B.detach() * scale
            ranks[m.name] = layer.rank
            fan_in_fan_out |= layer.fan_in_fan_out
    if not ranks:
        raise SaloraError("nothing to export: every adapted module has rank 0")
    extras = extra_state(model, adapters)
    for name, value in extras.items():
        tensors[f"base_model.model.{name}"] = value
    modules_to_save = sorted({n.rpartition(".")[0] for n in extras}) or None
    patterns = {_exact(name): r for name, r in ranks.items()}
    config = LoraConfig(
        r=max(ranks.values()), lora_alpha=max(ranks.values()), lora_dropout=0.0,
        target_modules=sorted(ranks), rank_pattern=patterns, alpha_pattern=dict(patterns),
        modules_to_save=modules_to_save, fan_in_fan_out=fan_in_fan_out,
        base_model_name_or_path=base_model_name_or_path, inference_mode=True)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    save_tensors(folder / "adapter_model.safetensors", tensors, metadata={"format": "pt"})
    return ranks


def _exact(name: str) -> str:
    # peft matches pattern keys as regexes against the end of module names
    return name.replace(".", r"\.")
