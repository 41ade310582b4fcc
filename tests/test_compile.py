"""SaLoRA trains under torch.compile between removals, with the same numbers as eager.

The test compiles with backend "eager" (TorchDynamo's capture and guards only, no code generation):
what SaLoRA can break is capture (graph breaks, guards on its hooks and pooled tensors), and
inductor's C++ code generation takes minutes on 2 CPU cores. `make bench` compiles with the default
backend (inductor) and reports the compiled step ratio.
"""
from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.utils import counters

import salora
from tiny_models import tiny, tokens

STEPS = 4


def _train(compiled: bool) -> tuple[list[float], list[int]]:
    model = tiny("bert").train()
    model.config.problem_type = "single_label_classification"  # else set (and recompiled) at step 1
    handle = salora.attach(model, salora.AdapterConfig(r_init=4, budget=2, prune_every=2, ramp_start=0.0,
                                                       ramp_end=0.25, freeze_at=1.0),
                           total_steps=STEPS, modules_to_save=["classifier"])
    forward = torch.compile(model, backend="eager") if compiled else model
    optimizer = torch.optim.AdamW(handle.trainable_parameters(), lr=1e-2)
    batch = {**tokens(), "labels": torch.tensor([0, 1, 0])}
    torch.manual_seed(0)
    losses, ranks = [], [handle.adapters.total_rank()]  # the rank before any step, then after each
    for _ in range(STEPS):
        loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        handle.step(optimizer)
        optimizer.zero_grad()
        losses.append(loss.item())
        ranks.append(handle.adapters.total_rank())
    return losses, ranks


def test_compiled_salora_trains_like_eager_across_a_removal():
    torch._dynamo.reset()
    counters.clear()
    eager = _train(compiled=False)
    compiled = _train(compiled=True)
    assert eager[1][-1] < eager[1][0]  # components were removed during the run (from step 1 on)
    assert compiled == eager  # same losses, bit for bit, and the same removals
    assert not counters["graph_break"]  # SaLoRA's hooks and pooled tensors capture whole
