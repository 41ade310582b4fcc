"""Fine-tuning methods behind one interface (salora_cli.methods.base.Method), so every comparison
runs through the same loop, found by name in one registry.

- salora:  gated adapters with a learned rank under a budget (the `salora` library)   adapters.py
- lora:    the same layer without gates: fixed rank (the fair baseline, same code)     adapters.py
- adalora: peft's AdaLoRA                                                              adalora.py
- full:    every weight trains                                                         full.py
- bitfit:  biases (and the new task head) train                                        bitfit.py

A new method is one module with a `Method` subclass and one entry in the registry
(salora_cli.core.method_registry). The registry names the module instead of importing it, so reading
the method names (config validation, `--help`) costs no torch import; the functions below import the
module when a method is built.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from salora.errors import SaloraError
from salora_cli.core.method_registry import spec

if TYPE_CHECKING:  # pragma: no cover
    from salora_cli.methods.base import Method


def method_class(name: str) -> "type[Method]":
    s = spec(name)
    return getattr(importlib.import_module(s.module), s.cls)


def build_method(model, cfg, total_steps: int) -> "Method":
    """A fresh method for `cfg.method` on `model`."""
    return method_class(cfg.method).create(model, cfg, total_steps)


def resume_method(model, cfg, total_steps: int, folder: Path) -> "Method":
    """The method as it was at a checkpoint: weights (and, for adapters, their learned shapes)."""
    return method_class(cfg.method).resume(model, cfg, total_steps, folder)


def load_method(model, cfg, folder: Path) -> "Method":
    """Rebuild a trained method from a saved checkpoint folder (for eval / export)."""
    if not folder.exists():
        raise SaloraError(f"checkpoint folder missing: {folder}")
    return method_class(cfg.method).from_saved(model, cfg, folder)
