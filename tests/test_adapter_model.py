"""Attaching by role, save/load, peft interop, and the budget controller."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from salora.budget import BudgetController
from salora.config import AdapterConfig
from salora.io import export_peft, load_adapter, save_adapter
from salora.model import attach_adapters as attach  # the AdapterSet alone (no step handle)
from salora_cli.core.errors import SaloraError
from tiny_models import logits, tiny, tokens

EXPECTED_PER_LAYER = {
    # role -> adapted matrices per block
    "bert": {"query": 1, "key": 1, "value": 1, "attn_out": 1, "ffn_in": 1, "ffn_out": 1},
    "roberta": {"query": 1, "key": 1, "value": 1, "attn_out": 1, "ffn_in": 1, "ffn_out": 1},
    "deberta-v2": {"query": 1, "key": 1, "value": 1, "attn_out": 1, "ffn_in": 1, "ffn_out": 1},
    "gpt2": {"query": 1, "attn_out": 1, "ffn_in": 1, "ffn_out": 1},  # c_attn fuses q, k, v
    "llama": {"query": 1, "key": 1, "value": 1, "attn_out": 1, "ffn_in": 2, "ffn_out": 1},
}


@pytest.mark.parametrize("arch", sorted(EXPECTED_PER_LAYER))
def test_roles_map_on_every_architecture(arch):
    model = tiny(arch)
    adapters = attach(model, AdapterConfig(r_init=2, budget=1))
    per_role = Counter(m.role for m in adapters.modules)
    assert per_role == Counter({r: 2 * n for r, n in EXPECTED_PER_LAYER[arch].items()})
    assert {m.layer_index for m in adapters.modules} == {0, 1}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n or "log_alpha" in n) for n in trainable)


def test_role_subset_and_head_kept_trainable():
    model = tiny("bert")
    adapters = attach(model, AdapterConfig(r_init=2, budget=1, target_roles=["query", "value"]),
                      modules_to_save=["classifier"])
    assert {m.role for m in adapters.modules} == {"query", "value"}
    assert model.classifier.weight.requires_grad
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad


def test_unknown_target_lists_linear_layers():
    model = tiny("bert")
    with pytest.raises(SaloraError, match=r"match no linear layer.*attention\.self\.query"):
        attach(model, AdapterConfig(target_modules=["q_proj"]))


@pytest.mark.parametrize("bad", [dict(r_init=0), dict(r_init=4, budget=5), dict(budget=-1),
                                 dict(target_roles=["queries"]), dict(method="dora"),
                                 dict(ramp_start=0.7, ramp_end=0.5)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(SaloraError):
        AdapterConfig(**bad)


def _perturb(adapters, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in adapters:
            layer.lora_B.add_(0.3 * torch.randn(layer.lora_B.shape, generator=g))
            if layer.gated:
                layer.lora_lambda.copy_(torch.randn(layer.rank, generator=g))
                layer.log_alpha.copy_(3 * torch.randn(layer.rank, generator=g))


def test_save_load_round_trip_after_removal(tmp_path):
    model = tiny("bert")
    adapters = attach(model, AdapterConfig(r_init=4, budget=2), modules_to_save=["classifier"])
    _perturb(adapters)
    with torch.no_grad():
        model.classifier.weight.normal_()
    adapters.remove_closed()
    ranks = adapters.ranks()
    assert len(set(ranks.values())) > 1  # a mix of learned ranks
    batch = tokens()
    expected = logits(model, batch)
    save_adapter(model, adapters, tmp_path / "adapter")

    fresh = tiny("bert")  # same seed: same base weights, a different (fresh) classifier is overwritten
    loaded = load_adapter(fresh, tmp_path / "adapter")
    assert loaded.ranks() == ranks
    assert torch.allclose(logits(fresh, batch), expected, atol=1e-6)


def test_corrupted_adapter_is_a_clear_error(tmp_path):
    model = tiny("bert")
    adapters = attach(model, AdapterConfig(r_init=2, budget=1))
    save_adapter(model, adapters, tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SaloraError, match="corrupted"):
        load_adapter(tiny("bert"), tmp_path)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_peft_export_loads_in_vanilla_peft(tmp_path, arch):
    model = tiny(arch)
    save = ["classifier"] if arch == "bert" else None
    adapters = attach(model, AdapterConfig(r_init=4, budget=2), modules_to_save=save)
    _perturb(adapters, seed=1)
    if arch == "bert":
        with torch.no_grad():
            model.classifier.weight.normal_()
    adapters.remove_closed()
    with torch.no_grad():  # force one module to rank 0: it must be left out of the export
        adapters.modules[0].module.log_alpha.fill_(-9)
    adapters.remove_closed()
    batch = tokens()
    expected = logits(model, batch)
    exported = export_peft(model, adapters, tmp_path / "peft")
    assert adapters.modules[0].name not in exported
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"

    base = tiny(arch)  # same seed, plain transformers model: no salora code involved
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    assert torch.allclose(logits(peft_model, batch), expected, atol=1e-5)
    merged = peft_model.merge_and_unload()
    assert torch.allclose(logits(merged, batch), expected, atol=1e-5)


def test_our_lora_matches_peft_lora_given_the_same_weights():
    ours = tiny("bert")
    adapters = attach(ours, AdapterConfig(method="lora", r_init=4, alpha=8, target_roles=["query", "value"]))
    theirs = get_peft_model(tiny("bert"), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    g = torch.Generator().manual_seed(0)
    peft_layers = {n.removeprefix("base_model.model."): m for n, m in theirs.named_modules()
                   if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}
    assert set(peft_layers) == {m.name for m in adapters.modules}
    with torch.no_grad():
        for m in adapters.modules:
            a, b = torch.randn(4, 32, generator=g), torch.randn(32, 4, generator=g)
            m.module.lora_A.copy_(a)
            m.module.lora_B.copy_(b)
            peft_layers[m.name].lora_A["default"].weight.copy_(a)
            peft_layers[m.name].lora_B["default"].weight.copy_(b)
    batch = tokens()
    assert torch.allclose(logits(ours, batch), logits(theirs.eval(), batch), atol=1e-5)


def test_target_schedule_and_projected_ascent():
    cfg = AdapterConfig(r_init=12, budget=8, ramp_start=0.1, ramp_end=0.5, freeze_at=0.8)
    ctl = BudgetController(cfg, total_steps=100)
    assert ctl.target(0) == ctl.target(10) == 12
    assert 8 < ctl.target(20) < 12 and ctl.target(30) < ctl.target(20)
    assert ctl.target(50) == ctl.target(90) == 8
    assert not ctl.should_freeze(79) and ctl.should_freeze(80)
    # below target: the multiplier never goes negative, and there is no pressure
    for step in range(60, 70):
        ctl.ascend(7.0, step)
    assert ctl.state.integral == 0.0
    assert ctl.pressure(7.0, 60) == 0.0
    # above target and not closing the gap: pressure builds by ascent ...
    for step, s_hat in zip(range(60, 70), [9.0 + 0.01 * i for i in range(10)]):
        ctl.ascend(s_hat, step)
    assert ctl.state.integral == pytest.approx(sum(1.0 + 0.01 * i for i in range(10)) * cfg.multiplier_lr)
    # ... and the proportional term reacts at once
    assert ctl.pressure(9.0, 70) == pytest.approx(ctl.state.integral + cfg.multiplier_damping)
    assert ctl.pressure(7.9, 70) == pytest.approx(max(0.0, ctl.state.integral - 0.1 * cfg.multiplier_damping))
    # anti-windup: while ŝ is above t but closing the gap, the integral holds still
    held = ctl.state.integral
    for step, s_hat in zip(range(70, 75), [8.9, 8.7, 8.5, 8.3, 8.1]):
        ctl.ascend(s_hat, step)
    assert ctl.state.integral == pytest.approx(held)


def test_equality_form_can_push_gates_back_up():
    cfg = AdapterConfig(r_init=12, budget=8, budget_form="equality")
    ctl = BudgetController(cfg, total_steps=10)
    for _ in range(5):
        ctl.ascend(7.0, 10)
    assert ctl.state.integral < 0 < ctl.state.quadratic
    assert ctl.pressure(7.0, 10) < 0  # below target: negative pressure reopens gates
