"""BitFit (Ben Zaken et al. 2022): only the biases, and a new task head, train."""
from __future__ import annotations

from salora_cli.core.errors import SaloraError
from salora_cli.methods.base import Method, head_modules


class BitFit(Method):
    name = "bitfit"

    def __init__(self, model, cfg):
        super().__init__(model, cfg)
        heads = tuple(f"{h}." for h in head_modules(model))
        for n, p in model.named_parameters():
            p.requires_grad_(n.endswith(".bias") or n.startswith(heads))
        if not any(p.requires_grad for p in model.parameters()):
            # Llama-style blocks (SmolLM2, LLaMA, Mistral) have no bias terms: BitFit has nothing to train
            raise SaloraError(f"bitfit: {cfg.model} has no bias terms and no new head, so nothing would train "
                              "(Llama-style models have no biases; use lora, salora, adalora or full)")
