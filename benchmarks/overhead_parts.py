"""Where SaLoRA's extra step time goes in a grid run: the run retimed with its parts switched off.

`bench_runs.py` times a grid run against its LoRA counterpart. Here the same SaLoRA run is stepped
in turns with variants of itself and with LoRA at the budget rank (the runner's loop, one optimizer
step each in turn, as in bench_runs.py), and each variant's paired step-time ratio to LoRA is given
per SaLoRA phase:

  as run                     the grid's config
  term every 4th step        orth_every 4: the term on one step in four, at 4 x its weight
  no orthogonality term      orth_reg 0: no penalty, forward or backward (its padded layout neither)
  no term, no stacks         also the layers scale their own A instead of views of the stacks
                             (salora.stacks): gates, λ, the budget and removal are what remains

  the term twice             as run, plus a second copy of the term added at weight 0: the same
                             trajectory bit for bit (x + 0 is x), with the term's work done twice,
                             so its paired ratio minus the as-run one is what the term costs along
                             the grid's own run, at its own shapes (the script checks the two end
                             with equal weights)

What remains after both is the gates' and λ's work and the shapes removal leaves (each matrix at its
own rank; benchmarks/rank_cost.py). To tell those two apart, one more run: LoRA with each matrix at the
rank the grid's SaLoRA run ended with (its ranks.json), against which the frozen phase compares the
same products with and without SaLoRA's own work. The variants without the term remove different components (the
term shapes which gates close), so their trajectories differ from the grid run's; the budget fixes
the total rank, which is printed. Timing only: no variant is evaluated, and nothing is written to
results/.

    python benchmarks/overhead_parts.py [--runs results/runs] [--task glue/sst2] [--budget 8] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_runs as br  # noqa: E402
import torch  # noqa: E402
from bench_step import quiet_loading  # noqa: E402
from salora.budget import orthogonality_penalty  # noqa: E402
from salora_cli.run.train import Trainer  # noqa: E402

LEARNED = "LoRA at SaLoRA's ranks"
TWICE = "the term twice"
VARIANTS = {"as run": {}, TWICE: {}, "term every 4th step": {"orth_every": 4}, "no orthogonality term": {"orth_reg": 0.0},
            "no term, no stacks": {"orth_reg": 0.0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=br.ROOT / "results" / "runs",
                    help="the grid's run folders (their config.yaml is enough)")
    ap.add_argument("--selection", type=Path, default=br.ROOT / "results" / "selection.json")
    ap.add_argument("--task", default="glue/sst2")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="data folder (default: $SALORA_DATA)")
    args = ap.parse_args()
    runs = br.chosen_runs(args.runs, args.selection, args.budget, args.seed, [args.task]).get(args.task)
    if runs is None:
        raise SystemExit(f"error: no SaLoRA and LoRA run of {args.task} at budget {args.budget} under {args.runs}")
    quiet = Console(file=open(os.devnull, "w"))
    work = Path(tempfile.mkdtemp(prefix="overhead_parts_"))
    stepped = []
    learned = {m["name"]: m["rank"] for m in json.loads((runs["salora"] / "ranks.json").read_text())["modules"]}
    for name, changes in [*VARIANTS.items(), (LEARNED, None), ("lora", None)]:
        cfg = br.load_grid_config(runs["salora" if changes is not None else "lora"], args.data)
        for key, value in (changes or {}).items():
            setattr(cfg.adapter, key, value)
        if name == LEARNED:  # built at SaLoRA's r_init, then cut (its α/r scale does not change a step's cost)
            cfg.adapter.r_init = max(learned.values())
        folder = work / name.replace(" ", "_").replace(",", "")
        folder.mkdir()
        with quiet_loading():
            trainer = Trainer(cfg, folder, console=quiet)
        if name == TWICE:
            _add_a_second_term(trainer.method.handle)
        if name == "no term, no stacks":
            trainer.method.adapters.stack_in_forward = False
        if name == LEARNED:  # LoRA's matrices cut to the learned ranks, its optimizer state with them
            for m in trainer.method.adapters.modules:
                m.module.keep_components(torch.arange(learned[m.name]), trainer.optimizer)
        stepped.append(br.SteppedRun(name, trainer))
    while any([run.step() for run in stepped]):  # a list: every run steps in each turn
        pass
    times = {run.name: run.trainer.state.step_times for run in stepped}
    a = stepped[0].trainer.cfg.adapter
    n = len(times["lora"])
    bounds = [0, a.ramp_start, a.ramp_end, a.freeze_at, 1.0]
    spans = {"all steps": (0, n), **{p: (int(lo * n), int(hi * n)) for p, lo, hi in zip(br.PHASES, bounds, bounds[1:])}}
    print(f"{args.task}, budget {args.budget}, seed {args.seed}: {n} steps; SaLoRA {runs['salora'].name} "
          f"against LoRA {runs['lora'].name}; paired step-time ratio to LoRA (median over steps)")
    print(f"  {'variant':24s} " + " ".join(f"{p:>11s}" for p in spans) + "  final total rank")
    ratios = {}
    for run in stepped[:-1]:  # each against LoRA at the budget rank
        ratios[run.name] = []
        for lo, hi in spans.values():
            per_step = [s / lo_ for s, lo_ in zip(times[run.name][lo:hi], times["lora"][lo:hi])]
            ratios[run.name].append(statistics.median(per_step) if per_step else float("nan"))
        rank = run.trainer.method.adapters.total_rank()
        print(f"  {run.name:24s} " + " ".join(f"{r:11.3f}" for r in ratios[run.name]) + f"  {rank}")
    cost = [t - r for t, r in zip(ratios[TWICE], ratios["as run"])]
    weights = [[t for layer in run.trainer.method.adapters for t in (layer.lora_A, layer.lora_B)]
               for run in stepped if run.name in ("as run", TWICE)]
    same = len(weights[0]) == len(weights[1]) and all(torch.equal(x, y) for x, y in zip(*weights))
    print(f"  {'the term (twice − as run)':24s} " + " ".join(f"{c:+11.3f}" for c in cost)
          + f"  ({'the same' if same else 'NOT the same'} weights at the end, as they must be)")
    lo, hi = spans["frozen"]  # same shapes in both from the freeze on: SaLoRA's own work alone
    own = [x / y for x, y in zip(times["as run"][lo:hi], times[LEARNED][lo:hi])]
    print(f"  after the freeze, SaLoRA as run ÷ LoRA at its ranks: {statistics.median(own):.3f}")
    print(f"  LoRA median step: {1000 * statistics.median(times['lora']):.1f} ms; "
          f"final total rank {stepped[-1].trainer.method.adapters.total_rank()}")


def _add_a_second_term(handle) -> None:
    """A second orthogonality term on the model's loss, at weight 0: computed, differentiated, and
    adding exactly nothing to the loss or any gradient. Registered in front of the handle's own term,
    while the forward's stacks still exist."""
    def hook(module, args, output):
        loss, stacks = getattr(output, "loss", None), handle.adapters.pool.stacks
        if module.training and torch.is_grad_enabled() and torch.is_tensor(loss) and stacks is not None:
            output.loss = loss + 0.0 * orthogonality_penalty(handle.adapters, handle.cfg.orth_form, stacks=stacks)
        return output

    handle.model.register_forward_hook(hook, prepend=True)


if __name__ == "__main__":
    main()
