"""SaLoRA's step time ÷ LoRA's in the grid's real runs, the two runs trained in turns (issue 20).

A run's own step time (metrics.json) is measured over a minute or more of wall time, and this
machine's speed drifts on that scale: within one SST-2 run the median step of 25-step blocks moved
by ±30 % against the same batches in the other method's run, so two runs made one after the other do
not compare to a few %. Here the runner's own loop (`Trainer.train_steps`: the same forward,
backward, optimizer, structure step, logging and progress line as `salora reproduce`) trains a
SaLoRA run and its LoRA counterpart one optimizer step each in turn, so step i of both meets the same
stretch of the machine's speed, and step i of both sees the same batch (same seed, same sampler).

Each run is rebuilt from the grid's own run folder (its config.yaml): per task, both methods at the
budget and seed given, each at the lr its group chose (results/selection.json). Each run keeps its
own RNG state (swapped in for its step), so it follows the same trajectory as the grid run: the
bench checks that its losses equal the grid run's log (or, where the folder kept none, as results/runs/
does, that SaLoRA's learned ranks equal its ranks.json). Mid-run evaluations and checkpoints are left
out (they cost no step time and change nothing in training).

    python benchmarks/bench_runs.py [--grid runs/reproduce/cpu | results/runs] [--selection results/selection.json]
                                    [--tasks glue/sst2,...] [--budget 8] [--seed 0] [--out results/step_time.md]

Reported per task: steps, the median step time of each method, the median over steps of the paired
per-step ratio with its 95 % interval (intervals.py) and the verdict on the target ≤ 1.05, and the
ratio of the summed step times (what the whole run waits).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# transformers' GGUF loader (the instruction-tuning model) draws a tqdm bar of its own per load, which
# hf logging's switch does not reach; tqdm reads this when it is imported, so before transformers
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from salora_cli.core import atomic, run_dir as rd  # noqa: E402
from salora_cli.run import rng as rng_states  # noqa: E402
from salora_cli.core import config as cfgmod  # noqa: E402
from salora_cli.core.errors import SaloraError  # noqa: E402
from salora_cli.run.train import Trainer  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_step import quiet_loading  # noqa: E402
from intervals import median_interval, verdict  # noqa: E402

METHODS = ("salora", "lora")  # in this order within each turn (the reverse order measured the same: 1.093 vs 1.096)
# SaLoRA's phases (adapter.ramp_start, ramp_end, freeze_at): before the ramp, the budget ramping down
# with removals, settling at the final budget, after the freeze
PHASES = ("before ramp", "ramp", "settling", "frozen")
TARGET = "<= 1.05"  # issue 20: SaLoRA's step ÷ LoRA's in the grid's real runs, every task
# the paired ratios' interval resamples blocks of this many consecutive steps (intervals.py): a step's
# ratio is like its neighbours' (same phase, same ranks, same stretch of the machine's speed), and one
# removal cycle of SST-2's ramp (prune_every) is 5 steps
BLOCK = 10


@dataclass
class SteppedRun:
    """One run being trained a step at a time, with its own RNG state kept between its steps."""
    name: str
    trainer: Trainer
    steps: object = None
    rng: dict = field(default_factory=dict)

    def __post_init__(self):
        self.steps = self.trainer.train_steps()
        self.rng = rng_states.capture()  # as the trainer's set_seed left it

    def step(self) -> bool:
        rng_states.restore(self.rng)
        try:
            next(self.steps)
            return True
        except StopIteration:
            return False
        finally:
            self.rng = rng_states.capture()


def chosen_runs(grid: Path, selection: Path, budget: int, seed: int, tasks: list[str] | None) -> dict[str, dict]:
    """{task: {method: run folder}} for the tasks where both methods chose an lr at this budget."""
    groups = json.loads(selection.read_text())["groups"]
    found: dict[str, dict] = {}
    for g in groups:
        if g["method"] in METHODS and g["budget"] == budget and g.get("chosen_lr") is not None:
            if tasks and g["task"] not in tasks:
                continue
            chosen = next(s["run"] for s in g["scores"] if s["lr"] == g["chosen_lr"])
            found.setdefault(g["task"], {})[g["method"]] = grid / chosen.replace("seed0", f"seed{seed}")
    # entries without an lr grid (instruction tuning) run at their configured lr: take them by name
    for folder in sorted(grid.glob(f"*_salora_b{budget}_*seed{seed}")):
        task = rd.load_config(folder).task
        twin = grid / folder.name.replace("_salora_", "_lora_")
        if task not in found and twin.is_dir() and (not tasks or task in tasks) and "_lr" not in folder.name:
            found[task] = {"salora": folder, "lora": twin}
    return {t: m for t, m in found.items() if set(m) == set(METHODS)}


def load_grid_config(run: Path, data: str | None) -> cfgmod.RunConfig:
    cfg = rd.load_config(run)
    if cfg.data_dir is None or not Path(cfg.data_dir).exists():  # the grid ran on another machine
        cfg.data_dir = cfgmod.default_data_dir(data, cfg.task)
    if cfg.train.grad_accum != 1:
        raise SaloraError(f"{run}: grad_accum {cfg.train.grad_accum}; two runs in turns share accelerate's "
                          "gradient state, so only grad_accum 1 is timed")
    cfg.train.eval_every = 10 ** 9  # no mid-run evaluation or checkpoint: neither is step time
    cfg.train.report_to = None
    return cfg


def grid_losses(run: Path) -> list[float]:
    with (run / "log.jsonl").open() as f:
        return [r["loss"] for r in map(json.loads, f) if "loss" in r]


def same_run(retimed: SteppedRun, work: Path, grid_run: Path) -> str:
    """Whether the retimed run is the grid's run: every logged loss equal when the grid folder kept
    its log (runs/reproduce/); else, for SaLoRA, every matrix's learned rank equal to its ranks.json
    (the record results/runs/ keeps: the ranks come out of the whole trajectory, gates and removals);
    else not checked."""
    if (grid_run / "log.jsonl").exists():
        return "losses equal" if grid_losses(work) == grid_losses(grid_run) else "losses DIFFER"
    ranks = grid_run / "ranks.json"
    if retimed.name == "salora" and ranks.exists():
        recorded = {m["name"]: m["rank"] for m in json.loads(ranks.read_text())["modules"]}
        mine = {m["name"]: m["rank"] for m in retimed.trainer.method.rank_modules()}
        if mine == recorded:
            return "ranks equal (no log kept)"
        differ = sum(mine.get(name) != rank for name, rank in recorded.items())
        return (f"ranks DIFFER in {differ} of {len(recorded)} matrices, {sum(mine.values())} against "
                f"{sum(recorded.values())} in all (no log kept)")
    return "not checked (no log kept)"


def time_pair(runs: dict[str, Path], data: str | None, work: Path) -> dict:
    quiet = Console(file=open(os.devnull, "w"))  # each trainer its own console: two live progress bars
    for m in METHODS:
        (work / m).mkdir()
    with quiet_loading():  # transformers' load report per model would bury the table
        stepped = [SteppedRun(m, Trainer(load_grid_config(runs[m], data), work / m, console=quiet)) for m in METHODS]
    while True:
        going = [r.step() for r in stepped]
        if not any(going):
            break
    times = {r.name: r.trainer.state.step_times for r in stepped}
    per_step = [s / lo for s, lo in zip(times["salora"], times["lora"])]
    same_path = {r.name: same_run(r, work / r.name, runs[r.name]) for r in stepped}
    a = next(r for r in stepped if r.name == "salora").trainer.cfg.adapter
    bounds = [0, a.ramp_start, a.ramp_end, a.freeze_at, 1.0]  # gates fixed, ramp, settling, frozen
    phases = {}
    for name, lo, hi in zip(PHASES, bounds, bounds[1:]):
        part = per_step[int(lo * len(per_step)):int(hi * len(per_step))]
        phases[name] = statistics.median(part) if part else None
    return {
        "runs": {m: _shown(runs[m]) for m in METHODS}, "steps": len(per_step),
        "median_step_s": {m: statistics.median(t) for m, t in times.items()},
        "paired_median_ratio": statistics.median(per_step),
        "paired_interval": median_interval(per_step, block=BLOCK),
        "summed_ratio": sum(times["salora"]) / sum(times["lora"]),
        "paired_median_ratio_by_phase": phases,
        "same_as_grid_run": same_path,
    }


def markdown(results: dict, command: str) -> str:
    lines = ["# Step time in the grid's runs: SaLoRA and LoRA trained in turns", "",
             f"Written by `{command}` on {results['date']} ({results['machine']}).", "",
             "Each task's SaLoRA run and its LoRA counterpart (budget "
             f"{results['budget']}, seed {results['seed']}, each at its chosen lr; the config of the grid's run "
             "folder) retrained by the runner's loop one optimizer step each in turn, so both meet the same "
             "stretch of the machine's speed and step i of both sees the same batch "
             "(`benchmarks/bench_runs.py`). Paired ratio: the median over steps of SaLoRA's step i ÷ "
             f"LoRA's step i, with a 95 % bootstrap interval (blocks of {BLOCK} consecutive steps resampled, "
             f"`benchmarks/intervals.py`) and the verdict it allows on the target {TARGET}: met (the whole "
             "interval under it), missed (all of it above), within noise (it holds the target); summed: SaLoRA's total step time ÷ LoRA's; by phase: the paired ratio over "
             "SaLoRA's phases (gates fixed before the ramp, the ramp with removals, settling at the budget, "
             "after the freeze). The grid's run?: whether the retimed run is the grid's run: every logged loss "
             "equal where the grid's folder kept its log (runs/reproduce/), else SaLoRA's learned rank of "
             "every matrix equal to its ranks.json (results/runs/ keeps no log); DIFFER where the code has "
             "changed since the grid's run in a way that changes float results (docs/benchmark.md, "
             "Numerics).", "",
             "| Task | steps | SaLoRA median s / step | LoRA median s / step | paired ratio | 95 % interval "
             f"| {TARGET.replace('<=', '≤')}? | summed ratio | " + " | ".join(PHASES) + " | the grid's run? |",
             "|---|---:|---:|---:|---:|---:|---|---:|" + "---:|" * len(PHASES) + "---|"]
    for task, r in results["tasks"].items():
        same = ", ".join(f"{m}: {said}" for m, said in r["same_as_grid_run"].items())
        low, high = r["paired_interval"]
        lines.append(f"| {task} | {r['steps']} | {r['median_step_s']['salora']:.4f} | "
                     f"{r['median_step_s']['lora']:.4f} | {r['paired_median_ratio']:.3f} | "
                     f"{low:.3f}–{high:.3f} | {verdict((low, high), TARGET)} | {r['summed_ratio']:.3f} | "
                     + " | ".join(_ratio(r["paired_median_ratio_by_phase"][p]) for p in PHASES) + f" | {same} |")
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    """A run folder as the record shows it: relative to the project when inside it (no machine's path)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=Path, default=None,
                    help="the grid's run folders (default: runs/reproduce/cpu, or results/runs where "
                         "that is absent, e.g. on a fresh clone: their config.yaml is enough)")
    ap.add_argument("--selection", type=Path, default=ROOT / "results" / "selection.json")
    ap.add_argument("--tasks", default=None, help="comma-separated, e.g. glue/sst2,glue/mrpc (default: all)")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "step_time.md")
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # no load report per model: the lines below are the output
    hf_logging.disable_progress_bar()
    try:
        if args.grid is None:
            args.grid = next((g for g in (ROOT / "runs" / "reproduce" / "cpu", ROOT / "results" / "runs") if g.is_dir()),
                             ROOT / "results" / "runs")
        pairs = chosen_runs(args.grid, args.selection, args.budget, args.seed,
                            args.tasks.split(",") if args.tasks else None)
        if not pairs:
            raise SaloraError(f"no SaLoRA/LoRA pair at budget {args.budget}, seed {args.seed} under {args.grid}")
        results = {"date": datetime.date.today().isoformat(), "budget": args.budget, "seed": args.seed,
                   "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
                              f"torch {torch.__version__}", "tasks": {}}
        for task, runs in pairs.items():
            print(f"{task}: {runs['salora'].name} and {runs['lora'].name}, in turns", flush=True)
            with tempfile.TemporaryDirectory() as work:
                results["tasks"][task] = r = time_pair(runs, os.environ.get("SALORA_DATA"), Path(work))
            low, high = r["paired_interval"]
            print(f"  {r['steps']} steps: paired ratio {r['paired_median_ratio']:.3f} ({low:.3f}–{high:.3f}, "
                  f"{TARGET}: {verdict((low, high), TARGET)}), summed "
                  f"{r['summed_ratio']:.3f}, the grid's runs: {r['same_as_grid_run']}", flush=True)
    except SaloraError as exc:
        sys.exit(f"error: {exc}")
    command = shlex.join(["python", "benchmarks/bench_runs.py", *sys.argv[1:]])
    atomic.write_text(args.out, markdown(results, command))
    atomic.write_json(args.out.with_suffix(".json"), {**results, "command": command})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
