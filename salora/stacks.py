"""Every gated layer's A and B, stacked by shape once per training forward, with the gate scales
folded into A's stack; the layers compute with views of the stacks, and the orthogonality penalty
uses the stacks themselves.

Why: the penalty batches A's rows and B's columns of one shape into one product (salora.budget).
Stacked from the layers' own A and B inside the penalty, each A and B has two consumers, its layer
and the stack, and the backward adds the two gradients matrix by matrix: 72 small adds a step on
MiniLM's 36 matrices, one dispatched op each. Stacked first, with the layers computing on views of
the stack, each A and B has one consumer: the layers' gradients are gathered into one tensor per
stack, the penalty's gradient joins them in one add per stack, and each A and B receives its slice.
Each element's gradient is the same sum of the same two terms, so training is bit-identical to
stacking inside the penalty; only the number of ops changes.

The gate scales s·λ⊙z multiply the rows of A's stack (one op per stack), so a layer computes
(x A_scaledᵀ) Bᵀ: plain LoRA's two products and nothing else. Scaling the r-dimensional hidden state
instead, as before, cost every layer a multiply in the forward and, in the backward, the gradient
through it and the scale's own gradient (a multiply and a sum over every token): four small ops a
layer where LoRA has two (its constant s), each a kernel launch on a GPU whatever the layer's size
(MiniLM's short SST-2 step: 1,642 kernels before, 1,512 after, LoRA 1,410). The product is
x (A ⊙ c)ᵀ where it was (x Aᵀ) ⊙ c: equal in exact arithmetic, not in floating point (README
"Benchmark" says what it did to the results). peft's AdaLoRA scales A by its singular values the
same way. The penalty keeps the unscaled stack: it measures directions; λ ⊙ z carries the sizes.

The grouping (which layers share a shape) changes only when components are removed, so it is
computed once per set of ranks, not at every forward.
"""
from __future__ import annotations

import torch


class StackPlan:
    """Which gated, non-empty layers share an A shape (r, d_in) and a B shape (d_out, r), in layer
    order, and the order in which the penalty visits the (r, d) shapes of its vectors."""

    def __init__(self, layers: list):
        self.ranks = tuple(layer.rank for layer in layers)
        self.a_groups: dict[tuple, list[int]] = {}  # (r, d_in) -> slots
        self.b_groups: dict[tuple, list[int]] = {}  # (d_out, r) -> slots
        for slot, layer in enumerate(layers):
            if layer.gated and layer.rank:
                self.a_groups.setdefault(tuple(layer.lora_A.shape), []).append(slot)
                self.b_groups.setdefault(tuple(layer.lora_B.shape), []).append(slot)
        self.count = sum(len(slots) for slots in self.a_groups.values())  # matrices in the penalty
        # A's shapes first, then the B shapes (as (r, d_out)) no A has: the penalty sums per shape in
        # this order, so its value does not depend on how it was stacked
        self.vector_shapes = list(dict.fromkeys([*self.a_groups, *(s[::-1] for s in self.b_groups)]))
        starts = [0]
        for layer in layers:
            starts.append(starts[-1] + layer.rank)
        # each A stack's components as positions in the flat per-component tensors (salora.pool),
        # layer order: the stack's gate scales are one index_select of the flat scales
        self._scale_positions = {shape: [i for s in slots for i in range(starts[s], starts[s + 1])]
                                 for shape, slots in self.a_groups.items()}
        self._index: dict[tuple, torch.Tensor] = {}

    def scale_index(self, shape: tuple, device: torch.device) -> torch.Tensor:
        key = (shape, device)
        if key not in self._index:
            self._index[key] = torch.tensor(self._scale_positions[shape], dtype=torch.long, device=device)
        return self._index[key]


class WeightStacks:
    """This forward's stacks; given the flat gate scales (`scales`: s·λ⊙z of every component, in
    the pool's order), also each layer's views (A with its rows scaled, B) to compute with (None
    for a layer left out)."""

    def __init__(self, layers: list, plan: StackPlan, scales: torch.Tensor | None = None):
        self.plan = plan
        self.a = {shape: _stack([layers[s].lora_A for s in slots], shape) for shape, slots in plan.a_groups.items()}
        self.b = {shape: _stack([layers[s].lora_B for s in slots], shape) for shape, slots in plan.b_groups.items()}
        self.views: list | None = None
        if scales is None:
            return
        scaled = {shape: a * scales.index_select(0, plan.scale_index(shape, scales.device)).view(*a.shape[:2], 1)
                  for shape, a in self.a.items()}
        a_views = {s: v for shape, slots in plan.a_groups.items() for s, v in zip(slots, scaled[shape].unbind(0))}
        b_views = {s: v for shape, slots in plan.b_groups.items() for s, v in zip(slots, self.b[shape].unbind(0))}
        self.views = [(a_views[s], b_views[s]) if s in a_views else None for s in range(len(layers))]

    def vectors(self) -> list[torch.Tensor]:
        """Per (r, d) shape, one (n, r, d) tensor whose rows should be orthonormal: the A's of that
        shape, then the B's transposed (their columns), in the plan's order of shapes."""
        out = []
        for r, d in self.plan.vector_shapes:
            parts = []
            if (r, d) in self.a:
                parts.append(self.a[(r, d)])
            if (d, r) in self.b:  # B's columns: one transpose of the stack, not one per matrix
                parts.append(self.b[(d, r)].transpose(1, 2))
            out.append(torch.cat(parts) if len(parts) > 1 else parts[0].contiguous())
        return out


def _stack(matrices: list[torch.Tensor], shape: tuple) -> torch.Tensor:
    """torch.stack(matrices), as one cat along rows and a view: the same tensor, without stack's
    per-matrix unsqueeze (two dispatched ops per matrix)."""
    return torch.cat(matrices).view(len(matrices), *shape)


def stack_weights(layers: list, plan: StackPlan | None = None, scales: torch.Tensor | None = None) -> WeightStacks:
    """The stacks of `layers` (a plan is made if none is given, or if the ranks changed); with
    `scales`, the layers' views too (WeightStacks)."""
    layers = list(layers)
    if plan is None or plan.ranks != tuple(layer.rank for layer in layers):
        plan = StackPlan(layers)
    return WeightStacks(layers, plan, scales)
