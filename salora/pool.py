"""One flat tensor for every layer's λ and one for every layer's gates (log α), a view per layer.

Why: SaLoRA's per-component tensors are tiny (r_init values per matrix, dozens of matrices). Held
per layer, every step pays per-tensor overhead dozens of times over: a cat in the forward and its
split in the backward, an AdamW update per λ in the user's optimizer, a gate Adam update and a
budget push per layer. Held flat, each is one op whatever the number of layers (on a GPU, one
kernel launch instead of dozens). A layer reads its segment as a view (`AdaptedLinear.lora_lambda`
and `.log_alpha` stay valid names); removal slices the flat tensors, and their optimizer state,
once for all layers.

The pool is a module registered on the adapted model (`salora_components`), so λ is one of
`model.parameters()` (the user's optimizer, DDP and `.to()` see it); log α, as in a single layer,
is a leaf tensor that is NOT a registered parameter (salora.layer explains why) and moves by hand.
"""
from __future__ import annotations

import torch
import torch.nn as nn

NAME = "salora_components"  # where the pool sits in the adapted model


class ComponentPool(nn.Module):
    def __init__(self, layers: list):
        super().__init__()
        self.ranks = [layer.rank for layer in layers]
        self.lora_lambda = nn.Parameter(torch.cat([layer.lora_lambda.detach() for layer in layers]))
        self.log_alpha = torch.cat([layer.log_alpha.detach() for layer in layers]).requires_grad_()
        self.coefs: tuple[torch.Tensor, ...] | None = None  # this forward's s·λ⊙z per layer (AdapterSet)
        self.stacks = None  # this forward's salora.stacks.WeightStacks (AdapterSet), when the layers use them
        self._index()

    def _index(self) -> None:
        self.offsets = [0]
        for r in self.ranks:
            self.offsets.append(self.offsets[-1] + r)

    def segment(self, name: str, slot: int) -> torch.Tensor:
        """Layer `slot`'s part of the flat tensor `name` ("lora_lambda" or "log_alpha"), as a view."""
        return getattr(self, name).narrow(0, self.offsets[slot], self.ranks[slot])

    def flat_parameters(self) -> dict[str, torch.Tensor]:
        return {"lora_lambda": self.lora_lambda, "log_alpha": self.log_alpha}

    @torch.no_grad()
    def keep(self, keeps: dict[int, torch.Tensor], optimizers=None) -> None:
        """Keep, in each layer `slot` of `keeps`, only its components `keeps[slot]` (local indices);
        the flat tensors are sliced once and swapped into `optimizers` with their state sliced."""
        if not keeps:
            return
        device = self.log_alpha.device
        parts = []
        for slot, (start, r) in enumerate(zip(self.offsets, self.ranks)):
            if slot in keeps:
                parts.append(keeps[slot].to(device) + start)
            else:
                parts.append(torch.arange(start, start + r, device=device))
        index = torch.cat(parts)
        self._replace(lambda t, dim: t.index_select(dim, index).contiguous(), index.numel(), optimizers)
        self.ranks = [int(keeps[s].numel()) if s in keeps else r for s, r in enumerate(self.ranks)]
        self._index()

    @torch.no_grad()
    def resize_slot(self, slot: int, r: int) -> None:
        """Set layer `slot`'s segment to r uninitialised values (loading a saved, pruned adapter)."""
        def resize(t: torch.Tensor, dim: int) -> torch.Tensor:
            start, end = self.offsets[slot], self.offsets[slot + 1]
            return torch.cat([t[:start], t.new_empty(r), t[end:]])
        self._replace(resize, self.offsets[-1] - self.ranks[slot] + r, None)
        self.ranks[slot] = r
        self._index()

    def _replace(self, make, n_new: int, optimizers) -> None:
        from salora.layer import _like, _swap_in_optimizer

        for attr, old in self.flat_parameters().items():
            n_old = old.shape[0]
            # an empty pool is skipped in forward: trainable, it would break DDP (no gradient)
            new = _like(old, make(old.detach(), 0), old.requires_grad and n_new > 0)
            setattr(self, attr, new)
            _swap_in_optimizer(optimizers, old, new, lambda v, n=n_old:
                               make(v, 0) if torch.is_tensor(v) and v.dim() == 1 and v.shape[0] == n else v)

    def _apply(self, fn, recurse: bool = True):
        # as AdaptedLinear._apply: the gates follow `.to()` by hand, in place, so the handle's
        # optimizer keeps pointing at the same tensor
        from salora.layer import move_in_place

        super()._apply(fn, recurse)
        move_in_place(self.log_alpha, fn)
        return self

    def extra_repr(self) -> str:
        return f"{len(self.ranks)} layers, {self.offsets[-1]} components"
