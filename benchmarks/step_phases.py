"""Where within an optimizer step SaLoRA's extra time falls: forward, backward, the optimizer's step,
the handle's step (gates, budget), zero_grad; against LoRA at r_init on the cpu grid's short SST-2
batch (bench_batches.py), for SaLoRA unpruned with and without its orthogonality term.

Each variant steps once per round, in a shuffled order; a part's figure is the median over rounds of
its paired difference to LoRA's same part in the same round (ms), and the whole step's paired ratio
with its 95 % interval (intervals.py). A control: a second LoRA, built the same way, against the
first; its ratio says how far two equal models read apart (were a model's memory placement to make it
faster or slower, every ratio here would carry that).

    python benchmarks/step_phases.py [--repeats 150]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step as bs  # noqa: E402
from bench_batches import sst2_batch  # noqa: E402
from intervals import median_interval  # noqa: E402

PARTS = ("forward", "backward", "optimizer", "handle.step", "zero_grad")
TWIN = "our LoRA, built again"


def timed_step(model, opt, handle, data) -> dict[str, float]:
    """bench_step.train_step, with a clock between its parts."""
    clock = [time.perf_counter()]
    loss = model(**data).loss
    clock.append(time.perf_counter())
    loss.backward()
    clock.append(time.perf_counter())
    opt.step()
    clock.append(time.perf_counter())
    if handle is not None:
        handle.step(opt)
    clock.append(time.perf_counter())
    opt.zero_grad(set_to_none=True)
    clock.append(time.perf_counter())
    return {part: b - a for part, a, b in zip(PARTS, clock, clock[1:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=150)
    args = ap.parse_args()
    data = sst2_batch()
    if data is None:
        raise SystemExit("error: SST-2 not found (set SALORA_DATA)")
    names = {bs.LORA: bs.LORA, TWIN: bs.LORA, bs.UNPRUNED_NO_TERM: bs.UNPRUNED_NO_TERM, bs.UNPRUNED: bs.UNPRUNED}
    built = {name: bs.build(variant) for name, variant in names.items()}
    times = {name: {part: [] for part in (*PARTS, "step")} for name in built}
    for name, args_ in built.items():  # warm-up
        for _ in range(3):
            timed_step(*args_, data)
    order, shuffle = list(built), random.Random(0).shuffle
    for _ in range(args.repeats):
        shuffle(order)
        for name in order:
            parts = timed_step(*built[name], data)
            for part, t in parts.items():
                times[name][part].append(t)
            times[name]["step"].append(sum(parts.values()))
    lora = times[bs.LORA]
    print(f"SST-2 short batch {data['input_ids'].shape[0]}×{data['input_ids'].shape[1]}, {args.repeats} rounds, "
          f"{torch.get_num_threads()} threads; LoRA's median step {1000 * statistics.median(lora['step']):.1f} ms")
    print(f"  {'variant':28s} " + " ".join(f"{p:>11s}" for p in PARTS) + f" {'step ratio':>11s}  95% interval")
    for name in list(built)[1:]:
        diffs = [1000 * statistics.median(a - b for a, b in zip(times[name][p], lora[p])) for p in PARTS]
        ratios = [a / b for a, b in zip(times[name]["step"], lora["step"])]
        low, high = median_interval(ratios)
        print(f"  {name:28s} " + " ".join(f"{d:+9.2f}ms" for d in diffs)
              + f" {statistics.median(ratios):11.3f}  {low:.3f}–{high:.3f}")


if __name__ == "__main__":
    main()
