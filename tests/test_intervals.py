"""benchmarks/intervals.py: the bootstrap interval a timing verdict rests on, and the verdict."""
from __future__ import annotations

import random
import statistics
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from intervals import median_interval, verdict  # noqa: E402


def test_the_interval_holds_the_median_and_narrows_with_more_values():
    rng = random.Random(5)
    few = [1.04 + rng.gauss(0, 0.03) for _ in range(40)]
    many = [1.04 + rng.gauss(0, 0.03) for _ in range(400)]
    lo_few, hi_few = median_interval(few)
    lo_many, hi_many = median_interval(many)
    assert lo_few <= statistics.median(few) <= hi_few and lo_many <= statistics.median(many) <= hi_many
    assert hi_many - lo_many < 0.6 * (hi_few - lo_few)  # ~1/√10 of the width, give or take the draw
    assert median_interval(few) == (lo_few, hi_few)  # fixed seed


def test_blocks_keep_the_dependence_between_neighbouring_steps():
    """A run whose ratio sits at one level for 35 steps and at another for the next 65 (two phases):
    resampled step by step, every resample holds about 65 % of the upper phase and the median stays
    there, so the interval is narrow; resampled in blocks of 10, the phases' shares vary as much as ten
    draws of a block do, the median falls into the lower phase in some resamples, and the interval
    is an order of magnitude wider."""
    rng = random.Random(1)
    phases = [1.00 + rng.gauss(0, 0.005) for _ in range(35)] + [1.10 + rng.gauss(0, 0.005) for _ in range(65)]
    single, blocks = median_interval(phases), median_interval(phases, block=10)
    assert single[0] > 1.05 and blocks[0] < 1.05  # only the blocks reach the lower phase
    assert blocks[1] - blocks[0] > 5 * (single[1] - single[0])
    with pytest.raises(ValueError):
        median_interval([1.0])


@pytest.mark.parametrize("interval, target, said", [
    ((1.01, 1.02), "<= 1.03", "met"), ((1.04, 1.06), "<= 1.03", "missed"),
    ((1.02, 1.04), "<= 1.03", "within noise"), ((1.0, 1.03), "<= 1.03", "met"), ((1.0, 1.1), None, "")])
def test_verdict(interval, target, said):
    assert verdict(interval, target) == said


def test_bench_runs_table_gives_each_task_its_interval_and_verdict():
    from bench_runs import markdown

    task = {"runs": {}, "steps": 250, "median_step_s": {"salora": 0.155, "lora": 0.145},
            "paired_median_ratio": 1.07, "paired_interval": (1.055, 1.082), "summed_ratio": 1.06,
            "paired_median_ratio_by_phase": {"before ramp": 1.0, "ramp": 1.08, "settling": 1.06, "frozen": 1.06},
            "same_as_grid_run": {"salora": "ranks equal"}}
    text = markdown({"date": "2026-12-03", "machine": "m", "budget": 8, "seed": 0,
                     "tasks": {"glue/sst2": task, "glue/mrpc": {**task, "paired_median_ratio": 1.02, "paired_interval": (1.01, 1.03)}}}, "cmd")
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| glue/")}
    assert "| 1.070 | 1.055–1.082 | missed |" in rows["| glue/sst2"]
    assert "| 1.020 | 1.010–1.030 | met |" in rows["| glue/mrpc"]
