"""Length-grouped batches: every example once per epoch, little padding, seeded and epoch-dependent."""
import random

from salora_cli.run.batching import LengthGroupedSampler


def _batches(sampler, batch_size):
    order = list(sampler)
    return order, [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def test_each_epoch_is_a_permutation_with_grouped_lengths():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(2_000)]
    sampler = LengthGroupedSampler(lengths, batch_size=16, seed=3)
    order, batches = _batches(sampler, 16)
    assert sorted(order) == list(range(2_000))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    shuffled = list(range(2_000))
    rng.shuffle(shuffled)
    padded_random = sum(max(lengths[i] for i in shuffled[k:k + 16]) * len(shuffled[k:k + 16])
                        for k in range(0, 2_000, 16))
    assert padded < 0.75 * padded_random  # uniform lengths: random batches pad to near the maximum


def test_seeded_and_different_per_epoch():
    lengths = list(range(1_000))
    a, b = LengthGroupedSampler(lengths, 8, seed=1), LengthGroupedSampler(lengths, 8, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == sorted(first)
    assert list(LengthGroupedSampler(lengths, 8, seed=2)) != first
