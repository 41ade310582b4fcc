"""Every gated layer's A and B, stacked by size once per training forward, with the gate scales
folded into A's stack; the layers compute with views of the stacks, and the orthogonality penalty
uses the stacks themselves.

Why: the penalty batches A's rows and B's columns of one size into one product (salora.budget).
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
x (A ⊙ c)ᵀ where it was (x Aᵀ) ⊙ c: equal in exact arithmetic, not in floating point (docs/benchmark.md,
"Numerics", says what it did to the results). peft's AdaLoRA scales A by its singular values the
same way. The penalty keeps the unscaled stack: it measures directions; λ ⊙ z carries the sizes.

Grouped by the matrices' other dimension, not by their shape: A's by d_in (rows of any rank stack
into one (R, d_in) tensor), B's by d_out (each B flattened whole, one flat tensor per d_out, so a
layer's view of its B is contiguous like the B itself: a product with a strided weight rounds
differently), and the layers' views are one split of each. Grouped by shape, as before, every
distinct rank made stacks of its own: once removal had left MiniLM's 36 matrices at a dozen ranks,
a step of the cpu grid's SST-2 run made 9,673 ATen ops (2,136 kernels) where it made 7,963 (1,585)
before the first removal, and the runner's step cost 1.11 x LoRA's against 1.03 before
(benchmarks/bench_runs.py); grouped by size, the same step after the freeze makes 8,213 ops and
1,470 kernels (LoRA 7,194 and 1,419). The penalty wants each matrix's vectors apart, (n, r, d): one
index_select lays them out at the largest rank of the group, padding with zeros (a zero vector adds
nothing to any orthogonality form; the Frobenius form is not asked for a unit diagonal there). While
every matrix of a group has one rank, nothing is padded, and the tensors are the ones the shape
grouping made. The layout's backward is a gather too (`_PaddedLayout`): every real element sits at
exactly one place in the layout, so its gradient is the layout's gradient there, read by one
index_select per part (the A stack, the B's). Autograd's own backward of index_select scatters
with index_add_ into zeros, the same numbers (0 + g is g) at ~5x the CPU time (single-threaded:
~1.2 of ~1.6 ms a step on a MiniLM group after removal).

The grouping changes only when components are removed, so it is computed once per set of ranks,
not at every forward.
"""
from __future__ import annotations

import numpy as np
import torch


class StackPlan:
    """Which gated, non-empty layers share an A input size d_in and a B output size d_out (layer
    order), and how the penalty lays out their vectors: per size d, the rows of the A's with d_in = d,
    then the columns of the B's with d_out = d, each matrix's at its own index in (n, r_max, d)."""

    def __init__(self, layers: list):
        self.ranks = tuple(layer.rank for layer in layers)
        self.a_groups: dict[int, list[int]] = {}  # d_in -> slots
        self.b_groups: dict[int, list[int]] = {}  # d_out -> slots
        for slot, layer in enumerate(layers):
            if layer.gated and layer.rank:
                self.a_groups.setdefault(layer.lora_A.shape[1], []).append(slot)
                self.b_groups.setdefault(layer.lora_B.shape[0], []).append(slot)
        self.a_ranks = {d: [self.ranks[s] for s in slots] for d, slots in self.a_groups.items()}
        self.b_ranks = {d: [self.ranks[s] for s in slots] for d, slots in self.b_groups.items()}
        self.count = sum(len(slots) for slots in self.a_groups.values())  # matrices in the penalty
        # A's sizes first, then the B sizes no A has: the penalty sums per size in this order
        self.vector_dims = list(dict.fromkeys([*self.a_groups, *self.b_groups]))
        self._segments = {d: [*self.a_ranks.get(d, []), *self.b_ranks.get(d, [])] for d in self.vector_dims}
        starts = [0]
        for layer in layers:
            starts.append(starts[-1] + layer.rank)
        # each A stack's components as positions in the flat per-component tensors (salora.pool),
        # layer order: the stack's gate scales are one index_select of the flat scales
        self._scale_positions = {d: [i for s in slots for i in range(starts[s], starts[s + 1])]
                                 for d, slots in self.a_groups.items()}
        self._cache: dict[tuple, torch.Tensor] = {}
        self._host: dict[tuple, tuple] = {}  # numpy arrays the device caches are made from

    def vector_layout(self, d: int) -> tuple[int, int]:
        """(matrices, largest rank) of size d's vectors."""
        return len(self._segments[d]), max(self._segments[d])

    def padded(self, d: int) -> bool:
        return len(set(self._segments[d])) > 1

    def scale_index(self, d: int, device: torch.device) -> torch.Tensor:
        return self._cached(("scales", d), device, lambda: torch.tensor(self._scale_positions[d]))

    def pad_index(self, d: int, device: torch.device) -> torch.Tensor:
        """Element (i, k, j) of the padded layout (n, r_max, d) as a position in the size's flat
        source, [A stack, B's flattened, one zero]: element j of matrix i's k-th vector (row k of an
        A, column k of a B), or the zero where matrix i has fewer than k + 1 vectors."""
        return self._cached(("pad", d), device, lambda: torch.from_numpy(self._layout(d)[0]))

    def gather_back(self, d: int, device: torch.device) -> list[torch.Tensor]:
        """The inverse of pad_index, per part of the source (A stack, B's flattened): where each
        real element sits in the padded layout (each sits at exactly one place)."""
        return self._cached(("gather", d), device, lambda: [torch.from_numpy(p) for p in self._layout(d)[1]])

    def _layout(self, d: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """(pad_index, gather_back) of size d on the host: once per set of ranks, i.e. after every
        removal that changed one. Each matrix's vectors are one block of consecutive source positions
        (an A's as they are, a B's transposed), so both directions are filled block by block, without
        a mask over the whole layout or a scatter for the inverse (built that way it took ~6 ms on
        MiniLM and, with the torch copies, ~4 % of the step after every removal on SST-2)."""
        key = ("layout", d)
        if key not in self._host:
            a_ranks, b_ranks = self.a_ranks.get(d, []), self.b_ranks.get(d, [])
            n, r_max = self.vector_layout(d)
            zero = (sum(a_ranks) + sum(b_ranks)) * d  # the zero's position, after every weight
            index = np.full((n, r_max, d), zero, dtype=np.int64)
            inverse, start = [], 0
            for i, (r, is_b) in enumerate([*((r, False) for r in a_ranks), *((r, True) for r in b_ranks)]):
                # an A (r, d) is row-major: row k at k·d, so its vectors are one run of positions;
                # a B (d, r) too: column k's element j at j·r + k, so its vectors are a transpose
                block = np.arange(start, start + r * d, dtype=np.int64)
                index[i, :r] = block.reshape(d, r).T if is_b else block.reshape(r, d)
                local = np.arange(i * r_max * d, i * r_max * d + r * d, dtype=np.int64)
                inverse.append(local.reshape(r, d).T.reshape(-1) if is_b else local)
                start += r * d
            where = np.concatenate(inverse)
            a_size = sum(a_ranks) * d
            self._host[key] = (index.reshape(-1), [part for part in (where[:a_size], where[a_size:]) if part.size])
        return self._host[key]

    def real_rows(self, d: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(n, r_max): 1 where the padded layout holds a real vector, 0 where padding."""
        _, r_max = self.vector_layout(d)
        return self._cached(("real", d, dtype), device, lambda: (
            torch.arange(r_max)[None, :] < torch.tensor(self._segments[d])[:, None]).to(dtype))

    def zero(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The one zero the padded layouts point at (appended to each size's flat source)."""
        return self._cached(("zero", dtype), device, lambda: torch.zeros(1, dtype=dtype))

    def _cached(self, key: tuple, device: torch.device, build) -> torch.Tensor:
        key = (*key, device)
        if key not in self._cache:
            built = build()  # a tensor, or a list of them
            self._cache[key] = [t.to(device) for t in built] if isinstance(built, list) else built.to(device)
        return self._cache[key]


class WeightStacks:
    """This forward's stacks; given the flat gate scales (`scales`: s·λ⊙z of every component, in
    the pool's order), also each layer's views (A with its rows scaled, B) to compute with (None
    for a layer left out)."""

    def __init__(self, layers: list, plan: StackPlan, scales: torch.Tensor | None = None):
        self.plan = plan
        # A's rows stack into (R, d_in); each B is flattened whole (its memory as it is) and the
        # B's of one d_out are one flat tensor, so that a layer's B view is contiguous like the B
        # it stands for (a column slice of a (d_out, R) stack is strided, and a product with a
        # strided weight rounds differently from the layer's own product)
        self.a = {d: torch.cat([layers[s].lora_A for s in slots]) for d, slots in plan.a_groups.items()}
        self.b = {d: torch.cat([layers[s].lora_B.view(-1) for s in slots]) for d, slots in plan.b_groups.items()}
        self.views: list | None = None
        if scales is None:
            return
        scaled = {d: a * scales.index_select(0, plan.scale_index(d, scales.device)).unsqueeze(1)
                  for d, a in self.a.items()}
        a_views = {s: v for d, slots in plan.a_groups.items() for s, v in zip(slots, scaled[d].split(plan.a_ranks[d]))}
        b_views = {s: v.view(d, -1) for d, slots in plan.b_groups.items()
                   for s, v in zip(slots, self.b[d].split([d * r for r in plan.b_ranks[d]]))}
        self.views = [(a_views[s], b_views[s]) if s in a_views else None for s in range(len(layers))]

    def vectors(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per size d, one (n, r_max, d) tensor whose rows should be orthonormal (the A's rows, then
        the B's columns, matrix by matrix; rows past a matrix's rank are zero), and which of its rows
        are real (None when nothing is padded)."""
        out = []
        for d in self.plan.vector_dims:
            n, r_max = self.plan.vector_layout(d)
            a, b = self.a.get(d), self.b.get(d)
            if not self.plan.padded(d):  # one rank: the stacks as they are, B's columns by one transpose
                parts = [] if a is None else [a.view(-1, r_max, d)]
                if b is not None:
                    parts.append(b.view(-1, d, r_max).transpose(1, 2))
                out.append((torch.cat(parts) if len(parts) > 1 else parts[0].contiguous(), None))
                continue
            like = a if a is not None else b
            flat = [x.reshape(-1) for x in (a, b) if x is not None]
            padded = _PaddedLayout.apply(self.plan.pad_index(d, like.device), self.plan.gather_back(d, like.device),
                                         self.plan.zero(like.device, like.dtype), *flat).view(n, r_max, d)
            out.append((padded, self.plan.real_rows(d, like.device, like.dtype)))
        return out


class _PaddedLayout(torch.autograd.Function):
    """cat(parts, zero).index_select(index), whose backward gathers each part's gradient from the
    layout (`back`: where each of a part's elements sits) instead of scattering the layout's
    gradient into zeros: the same numbers, since each real element sits at one place only."""

    @staticmethod
    def forward(ctx, index, back, zero, *parts):
        ctx.back = back
        return torch.cat([*parts, zero]).index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.reshape(-1)
        return (None, None, None, *(grad.index_select(0, where) for where in ctx.back))


def stack_weights(layers: list, plan: StackPlan | None = None, scales: torch.Tensor | None = None) -> WeightStacks:
    """The stacks of `layers` (a plan is made if none is given, or if the ranks changed); with
    `scales`, the layers' views too (WeightStacks)."""
    layers = list(layers)
    if plan is None or plan.ranks != tuple(layer.rank for layer in layers):
        plan = StackPlan(layers)
    return WeightStacks(layers, plan, scales)
