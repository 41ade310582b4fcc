"""Component sizes read back from a saved adapter match the live layers' ΔW."""
from __future__ import annotations

import pytest
import torch

from salora.config import AdapterConfig
from salora.io import save_adapter
from salora.model import attach_adapters as attach  # the AdapterSet alone (no step handle)
from salora_cli.reports.magnitudes import adapter_spectra, summarise
from tiny_models import tiny


@pytest.mark.parametrize("method", ["salora", "lora"])
def test_spectrum_from_the_saved_adapter_is_the_live_delta_w(tmp_path, method):
    model = tiny("bert")
    adapters = attach(model, AdapterConfig(method=method, r_init=4, budget=2 if method == "salora" else None))
    torch.manual_seed(3)
    with torch.no_grad():
        for layer in adapters:
            layer.lora_B.normal_()
            if layer.gated:
                layer.lora_lambda.uniform_(0.5, 2.0)
                layer.log_alpha.uniform_(-1.0, 3.0)  # some gates partly closed: ẑ enters the size
    save_adapter(model, adapters, tmp_path)
    spectra = adapter_spectra(tmp_path)
    for m in adapters.modules:
        expected = torch.linalg.svdvals(m.module.delta_weight().double())[:m.module.rank]
        assert spectra[m.name]["singular_values"] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-9)
    summary = summarise(spectra)
    assert summary["singular_values"]["n"] == 4 * len(adapters)
    assert summary["singular_values"]["p10"] <= summary["singular_values"]["median"] <= summary["singular_values"]["max"]
