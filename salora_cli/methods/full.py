"""Full fine-tuning: every weight trains (the reference the adapters are measured against)."""
from __future__ import annotations

from salora_cli.methods.base import Method


class FullFineTuning(Method):
    name = "full"

    def __init__(self, model, cfg):
        super().__init__(model, cfg)
        for p in model.parameters():
            p.requires_grad_(True)
