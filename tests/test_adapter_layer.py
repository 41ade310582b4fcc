"""The gated low-rank layer: init, gradients, gates, removal, merge."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from salora.config import AdapterConfig
from salora.gates import HardConcrete
from salora.layer import AdaptedLinear
from salora.model import attach_adapters as attach  # the AdapterSet alone (no step handle)
from tiny_models import logits, tiny, tokens


def _layer(gated=True, r=6, d_in=20, d_out=12, seed=0):
    torch.manual_seed(seed)
    return AdaptedLinear(nn.Linear(d_in, d_out), r, alpha=8.0, gates=HardConcrete() if gated else None)


@pytest.mark.parametrize("method", ["salora", "lora"])
def test_delta_is_zero_at_init(method):
    model = tiny("bert")
    batch = tokens()
    before = logits(model, batch)
    attach(model, AdapterConfig(method=method, r_init=4))
    model.train()  # stochastic gates must not matter either while ΔW = 0
    torch.manual_seed(3)
    with torch.no_grad():
        train_out = model(**batch).logits
    model.eval()
    assert torch.allclose(logits(model, batch), before, atol=1e-6)
    assert torch.allclose(train_out, before, atol=1e-6)


def test_gradients_reach_every_parameter():
    layer = _layer()
    x = torch.randn(5, 20)
    layer.train()
    layer(x).pow(2).sum().backward()
    # at init only B sees task gradient (ΔW = B·diag(λz)·A with B = 0), as in LoRA
    assert layer.lora_B.grad.abs().sum() > 0
    for p in (layer.lora_A, layer.lora_lambda, layer.log_alpha):
        assert p.grad is None or p.grad.abs().sum() == 0
    # once the components contribute, every parameter (every gate) gets gradient
    with torch.no_grad():
        layer.lora_B.normal_()
    layer.zero_grad()
    torch.manual_seed(0)
    for _ in range(20):  # a gate sampled at its clip (z = 1) passes no gradient on that draw
        layer(x).pow(2).sum().backward()
    for p in (layer.lora_A, layer.lora_B, layer.lora_lambda, layer.log_alpha):
        assert p.grad is not None and bool(torch.all(p.grad != 0))


def test_expected_rank_matches_monte_carlo():
    gates = HardConcrete()
    log_alpha = torch.tensor([-4.0, -2.0, -0.5, 0.0, 0.7, 2.0, 4.0])
    torch.manual_seed(0)
    samples = torch.stack([gates.sample(log_alpha) for _ in range(40000)])
    empirical = (samples > 0).float().mean(0)
    assert torch.allclose(empirical, gates.prob_open(log_alpha), atol=0.01)
    # and the deterministic gate is the clipped, stretched sigmoid
    assert gates.deterministic(torch.tensor(-10.0)) == 0
    assert gates.deterministic(torch.tensor(10.0)) == 1
    assert math.isclose(float(gates.deterministic(torch.tensor(0.0))), 0.5, abs_tol=1e-6)
    thr = gates.closed_threshold()
    assert gates.deterministic(torch.tensor(thr - 1e-3)) == 0 < gates.deterministic(torch.tensor(thr + 1e-3))


def test_gates_start_open():
    layer = _layer()
    assert torch.all(layer.gates.deterministic(layer.log_alpha) == 1)
    assert float(layer.expected_rank()) > 0.97 * layer.rank


def test_init_directions_orthonormal_and_delta_zero():
    layer = _layer(r=6, d_in=20, d_out=12)
    assert torch.allclose(layer.lora_A @ layer.lora_A.T, torch.eye(6), atol=1e-5)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.all(layer.lora_lambda == 1)
    assert torch.count_nonzero(layer.delta_weight()) == 0


def test_removal_preserves_eval_output_and_optimizer_state():
    layer = _layer()
    # the gates are not registered parameters (salora.layer): an optimizer over them is built explicitly
    opt = torch.optim.AdamW([*layer.parameters(), layer.log_alpha], lr=1e-2)
    x = torch.randn(8, 20)
    layer.train()
    for _ in range(3):
        opt.zero_grad()
        layer(x).pow(2).mean().backward()
        opt.step()
    with torch.no_grad():
        layer.log_alpha[[1, 4]] = -5.0  # closed: deterministic gate exactly 0
    layer.eval()
    before = layer(x)
    survivors = [0, 2, 3, 5]
    old = {n: (p, opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone(), d)
           for n, (p, d) in layer.adapter_parameters().items()}
    assert layer.remove_closed(opt) == 2
    assert layer.rank == 4
    assert torch.allclose(layer(x), before, atol=1e-6)
    for name, (p_old, m_old, v_old, dim) in old.items():
        p_new = getattr(layer, name)
        state = opt.state[p_new]
        assert p_old not in opt.state
        idx = torch.tensor(survivors)
        assert torch.equal(state["exp_avg"], m_old.index_select(dim, idx))
        assert torch.equal(state["exp_avg_sq"], v_old.index_select(dim, idx))
        assert any(p is p_new for g in opt.param_groups for p in g["params"])
        assert isinstance(p_new, torch.nn.Parameter) == (name != "log_alpha")
    # training continues seamlessly on the smaller shapes
    layer.train()
    opt.zero_grad()
    layer(x).pow(2).mean().backward()
    opt.step()


def test_rank_zero_costs_nothing():
    layer = _layer()
    with torch.no_grad():
        layer.log_alpha.fill_(-9.0)
    layer.remove_closed()
    assert layer.rank == 0
    x = torch.randn(4, 20)
    layer.train()
    assert torch.equal(layer(x), layer.base(x))


@pytest.mark.parametrize("gated", [True, False])
def test_merge_equals_unmerged_eval_output(gated):
    layer = _layer(gated=gated)
    with torch.no_grad():
        layer.lora_B.normal_()
        if gated:
            layer.lora_lambda.normal_()
            layer.log_alpha.copy_(torch.tensor([3.0, -5.0, 0.0, 1.0, -1.0, 2.0]))
    layer.eval()
    x = torch.randn(5, 20)
    w0 = layer.base.weight.clone()
    expected = layer(x)
    layer.merge()
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.allclose(layer.base(x), expected, atol=1e-5)  # zero added latency: plain Linear
    layer.unmerge()
    assert torch.allclose(layer.base.weight, w0, atol=1e-6)


def test_conv1d_merge_gpt2():
    model = tiny("gpt2")
    adapters = attach(model, AdapterConfig(r_init=4, budget=2))
    for layer in adapters:
        with torch.no_grad():
            layer.lora_lambda.normal_()
    batch = tokens()
    expected = logits(model, batch)
    adapters.merge()
    assert torch.allclose(logits(model, batch), expected, atol=1e-4)


def test_gates_are_not_parameters_so_no_user_optimizer_steps_them():
    layer = _layer()
    names = {n for n, _ in layer.named_parameters()}
    assert "log_alpha" not in names and {"lora_A", "lora_B", "lora_lambda"} <= names
    assert layer.log_alpha.requires_grad and layer.log_alpha.is_leaf
    gate = layer.log_alpha
    layer.to(torch.float64)  # moved (and cast) with the module, in place: optimizers keep the tensor
    assert layer.log_alpha is gate and gate.dtype == torch.float64 and layer.lora_A.dtype == torch.float64
