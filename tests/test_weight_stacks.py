"""Stacking A and B once per training forward and scaling A's stacks (salora.stacks) changes the op
count, not the numbers: the same as each layer scaling its own A."""
from __future__ import annotations

import torch

import salora
from salora.budget import orthogonality_penalty
from salora.stacks import StackPlan, stack_weights
from tiny_models import tiny, tokens

STEPS = 6


def _train(stack_in_forward: bool):
    model = tiny("bert").train()
    handle = salora.attach(model, salora.AdapterConfig(r_init=4, budget=2, prune_every=2, ramp_start=0.0,
                                                       ramp_end=0.5, freeze_at=0.8),
                           total_steps=STEPS, modules_to_save=["classifier"])
    handle.adapters.stack_in_forward = stack_in_forward
    used = []  # whether the first adapted layer computed with views of the stacks, per forward
    first = next(iter(handle.adapters))
    first.register_forward_pre_hook(lambda m, a: used.append(handle.adapters.pool.stacks is not None))
    optimizer = torch.optim.AdamW(handle.trainable_parameters(), lr=1e-2)
    batch = {**tokens(), "labels": torch.tensor([0, 1, 0])}
    torch.manual_seed(0)
    losses, ranks = [], []
    for _ in range(STEPS):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        handle.step(optimizer)
        optimizer.zero_grad()
        losses.append(loss.item())
        ranks.append(tuple(handle.adapters.ranks().values()))
    return losses, ranks, {k: v.clone() for k, v in model.state_dict().items()}, used


def test_training_with_stacks_is_bit_identical_to_stacking_in_the_penalty():
    stacked, plain = _train(True), _train(False)
    assert all(stacked[3]) and not any(plain[3])  # the layers computed with views only when asked
    assert len(set(stacked[1][-1])) > 1  # removal left matrices of different ranks
    assert stacked[0] == plain[0] and stacked[1] == plain[1]  # losses and removals
    assert stacked[2].keys() == plain[2].keys()
    assert all(torch.equal(stacked[2][k], plain[2][k]) for k in plain[2])


def test_plan_groups_layers_by_shape_and_matches_the_penalty_on_the_leaves():
    model = tiny("bert")
    adapters = salora.attach(model, salora.AdapterConfig(r_init=4, budget=2)).adapters
    layers = list(adapters)
    with torch.no_grad():
        for layer in layers:
            layer.lora_B.normal_()
        layers[0].log_alpha[:2] = -10.0  # close two components of one matrix, then remove them
    adapters.remove_closed()
    plan = StackPlan(layers)
    assert plan.count == len(layers)
    # grouped by d_in / d_out, whatever the ranks: the pruned matrix stacks with the others
    assert set(plan.a_groups) == {layer.lora_A.shape[1] for layer in layers}
    assert 0 in plan.a_groups[32] and len(plan.a_groups[32]) > 1 and plan.padded(32)
    assert sum(len(s) for s in plan.a_groups.values()) == sum(len(s) for s in plan.b_groups.values()) == len(layers)
    scales = torch.rand(sum(layer.rank for layer in layers)) + 0.5
    stacks = stack_weights(layers, plan, scales)
    per_layer = scales.split([layer.rank for layer in layers])
    for slot, layer in enumerate(layers):  # each layer's views: its own A, rows scaled by its own scales, and B
        a, b = stacks.views[slot]
        assert torch.equal(a, layer.lora_A * per_layer[slot].unsqueeze(1)) and torch.equal(b, layer.lora_B)
    assert stack_weights(layers, plan).views is None  # without scales: only the penalty's stacks
    by_stacks = orthogonality_penalty(layers, stacks=stacks)
    assert torch.equal(by_stacks, orthogonality_penalty(layers))
    assert float(by_stacks.detach()) > 0


def _defect(vectors: torch.Tensor, form: str) -> torch.Tensor:
    """One matrix's orthogonality defect, written out (rows of `vectors` should be orthonormal)."""
    if form == "frobenius":
        return (vectors @ vectors.T - torch.eye(len(vectors))).pow(2).sum()
    total = vectors.new_zeros(())
    for i in range(len(vectors)):
        for j in range(len(vectors)):
            if i != j:
                vi, vj = vectors[i], vectors[j]
                if form == "weighted":
                    total = total + (vi @ vj) ** 2 / (vi.norm() * vj.norm())
                else:  # angles
                    ni, nj = vi / torch.sqrt(vi @ vi + 2.5e-3), vj / torch.sqrt(vj @ vj + 2.5e-3)
                    total = total + (ni @ nj) ** 2
    return total


def _spread_rank_layers() -> list:
    """A tiny BERT's adapted layers at ranks 4, 3, 2, 1 in turn (components removed), B random."""
    model = tiny("bert")
    adapters = salora.attach(model, salora.AdapterConfig(r_init=4, budget=2)).adapters
    layers = list(adapters)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.lora_B.normal_()
            layer.log_alpha[: i % 4] = -10.0
    adapters.remove_closed()
    assert {layer.rank for layer in layers} == {1, 2, 3, 4} and StackPlan(layers).padded(32)
    return layers


def test_penalty_over_spread_ranks_equals_the_penalty_written_out_matrix_by_matrix():
    # stacked by size with ranks 1-4 in one stack, zero-padded to rank 4: padding adds nothing
    layers = _spread_rank_layers()
    for form in ("weighted", "angles", "frobenius"):
        by_hand = sum(_defect(layer.lora_A, form) + _defect(layer.lora_B.T, form) for layer in layers) / len(layers)
        assert torch.allclose(orthogonality_penalty(layers, form), by_hand, rtol=1e-5), form


def test_padded_layout_gathers_the_same_gradients_autograd_would_scatter():
    # the layout's backward reads each element's gradient where it sits; autograd's own backward of
    # index_select scatters into zeros (index_add_): the same numbers, bit for bit
    layers = _spread_rank_layers()
    plan = StackPlan(layers)
    padded_sizes = [d for d in plan.vector_dims if plan.padded(d)]
    assert padded_sizes
    torch.manual_seed(0)
    for d in padded_sizes:
        stacks = stack_weights(layers, plan)
        (layout, _), = [v for size, v in zip(plan.vector_dims, stacks.vectors()) if size == d]
        parts = [x for x in (stacks.a.get(d), stacks.b.get(d)) if x is not None]
        source = torch.cat([*(x.reshape(-1) for x in parts), plan.zero(layout.device, layout.dtype)])
        reference = source.index_select(0, plan.pad_index(d, layout.device)).view_as(layout)
        assert torch.equal(layout, reference)
        upstream = torch.randn_like(layout)
        ours = torch.autograd.grad(layout, parts, upstream)
        theirs = torch.autograd.grad(reference, parts, upstream)
        assert all(torch.equal(x, y) for x, y in zip(ours, theirs))


def test_plan_layout_indices_match_the_layout_written_out_element_by_element():
    # pad_index and its inverse are built block by block (salora.stacks); here every element's
    # place is written out by hand: A's row k element j, B's column k element j, zero past a rank.
    # Sizes 5 and 7 hold A's and B's; size 3 only B's; one matrix has rank 0 and is left out.
    class Shapes:  # what StackPlan reads of a layer
        def __init__(self, r, d_in, d_out):
            self.lora_A, self.lora_B = torch.empty(r, d_in), torch.empty(d_out, r)
            self.gated, self.rank = True, r

    layers = [Shapes(2, 5, 7), Shapes(4, 7, 5), Shapes(1, 5, 5), Shapes(0, 5, 7), Shapes(3, 7, 3), Shapes(3, 5, 3)]
    plan = StackPlan(layers)
    cpu = torch.device("cpu")
    for d in plan.vector_dims:
        a_slots, b_slots = plan.a_groups.get(d, []), plan.b_groups.get(d, [])
        n, r_max = plan.vector_layout(d)
        sizes = [sum(layers[s].rank for s in slots) * d for slots in (a_slots, b_slots)]
        zero = sum(sizes)
        expected, start = [], 0
        for slot, is_b in [*((s, False) for s in a_slots), *((s, True) for s in b_slots)]:
            r = layers[slot].rank
            expected += [start + (j * r + k if is_b else k * d + j) if k < r else zero
                         for k in range(r_max) for j in range(d)]
            start += r * d
        index = plan.pad_index(d, cpu)
        assert index.tolist() == expected and len(expected) == n * r_max * d
        back = torch.cat(plan.gather_back(d, cpu))
        assert [len(p) for p in plan.gather_back(d, cpu)] == [s for s in sizes if s]
        assert torch.equal(index[back], torch.arange(zero))  # each real element found where it sits
