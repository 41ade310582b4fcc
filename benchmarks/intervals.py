"""How far a timing ratio can be trusted: a bootstrap interval for a median of per-step (or per-round)
ratios, and the verdict on a target that the interval allows.

A ratio of two step times on this machine moves by 1–3 % between sittings of the same code, so a
point estimate next to a target (1.031 against ≤ 1.03) says nothing by itself. The interval resamples
the ratios the median was taken over; where neighbouring ratios are not independent (the steps of one
training run: the same phase, the same ranks, the same stretch of machine speed), whole blocks of
consecutive ones are resampled (the moving-block bootstrap), so the interval keeps that dependence
instead of treating every step as a new draw. Fixed seed: the same times give the same interval.
"""
from __future__ import annotations

import math
import random
import statistics


def median_interval(values: list[float], block: int = 1, resamples: int = 2000,
                    level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of `values`, resampled in blocks of `block`
    consecutive values (1: each value on its own)."""
    n = len(values)
    if n < 2:
        raise ValueError("an interval needs at least two values")
    block = max(1, min(block, n))
    starts = range(n - block + 1)
    rng = random.Random(0)
    medians = []
    for _ in range(resamples):
        sample = []
        for start in rng.choices(starts, k=math.ceil(n / block)):
            sample.extend(values[start:start + block])
        medians.append(statistics.median(sample[:n]))
    medians.sort()
    tail = (1 - level) / 2
    return medians[int(tail * resamples)], medians[min(int((1 - tail) * resamples), resamples - 1)]


def verdict(interval: tuple[float, float], target: str | None) -> str:
    """"met" when the whole interval is at or under the target ("<= x"), "missed" when it is wholly
    above, "within noise" when it holds the target; "" without a target."""
    if not target:
        return ""
    bound = float(target.removeprefix("<=").strip())
    low, high = interval
    return "met" if high <= bound else "missed" if low > bound else "within noise"
