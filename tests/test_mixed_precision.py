"""bf16 autocast on the CPU, through accelerate as the runner uses it (`--mixed-precision bf16`):
SaLoRA and LoRA train, the adapted matrices compute in bf16, and everything the structure is
learned with (gates, λ, the gates' optimizer state, the budget multiplier) stays fp32."""
from __future__ import annotations

import math

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

import salora
from tiny_models import tiny, tokens


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one precision per process (a singleton): the runs of other tests in this
    process set "no", so it is reset around this test (accelerate's own tests do the same)."""
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


@pytest.mark.parametrize("method", ["salora", "lora"])
def test_bf16_autocast_trains_with_fp32_structure(method, fresh_accelerator_state):
    model = tiny("bert").train()
    handle = salora.attach(model, salora.AdapterConfig(method=method, r_init=4, budget=2, ramp_start=0.0,
                                                       prune_every=100, ramp_removals=0),
                           total_steps=20, modules_to_save=["classifier"])
    acc = Accelerator(cpu=True, mixed_precision="bf16")
    optimizer = torch.optim.AdamW(handle.trainable_parameters(), lr=1e-2)
    model, optimizer = acc.prepare(model, optimizer)
    seen = set()
    layer = next(iter(handle.adapters))
    hook = layer.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    batch = {**tokens(), "labels": torch.tensor([0, 1, 0])}
    torch.manual_seed(0)
    for _ in range(3):
        loss = model(**batch).loss
        acc.backward(loss)
        optimizer.step()
        handle.step(optimizer)
        optimizer.zero_grad()
        assert math.isfinite(loss.item())
    hook.remove()
    assert seen == {torch.bfloat16}  # autocast is on: the adapted matrices compute in bf16
    assert loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in handle.trainable_parameters())
    if method == "salora":
        pool = handle.adapters.pool
        assert pool.log_alpha.dtype == pool.lora_lambda.dtype == torch.float32
        state = handle.gate_optimizer.state[pool.log_alpha]
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32
        assert state["exp_avg"].abs().sum() > 0  # the gates did learn under autocast
        multiplier = handle.controller.state.multiplier  # a 0-dim tensor while training: no device sync
        assert multiplier.dtype == torch.float64 and multiplier > 0
