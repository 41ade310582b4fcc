"""Length-grouped shuffling (`train.group_by_length`), the idea of transformers' `group_by_length`.

Batches are padded to their longest example, so a random batch of RTE pairs (lengths 20 to 289
tokens) spends about half its compute on padding. Grouping examples of similar length into a batch
removes most of that without giving up randomness: each epoch the examples are shuffled, cut into
"mega-batches" of `MEGABATCH` batches, and each mega-batch is sorted by length before it is cut into
batches. Which examples share a batch changes from epoch to epoch, and every method of a grid sees
exactly the same batches (the order depends only on the seed, the epoch and the data).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

MEGABATCH = 50  # batches per sorted group: large enough to pad little, small enough to stay random


class LengthGroupedSampler(Sampler[int]):
    """Yields indices so that every consecutive `batch_size` of them have similar lengths.

    Mega-batches hold a whole number of batches, so a plain `BatchSampler` on top (and accelerate's
    per-process sharding of it) cuts exactly the grouped batches. `set_epoch` changes the order, as
    for a `DistributedSampler`; accelerate calls it through the prepared loader.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        # its own generator, seeded by (seed, epoch): starting an epoch draws nothing from the global RNG
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size = self.batch_size * MEGABATCH
        for start in range(0, len(order), size):
            # longest first within a group; the stable sort keeps ties in shuffled order
            yield from sorted(order[start:start + size], key=lambda i: -self.lengths[i])
