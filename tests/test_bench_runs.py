"""benchmarks/bench_runs.py trains a SaLoRA run and a LoRA run one step each in turn: each must follow
the trajectory it follows alone (its own RNG between its steps), and the time one run spends waiting
for the other must count in neither's step times."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from conftest import ROOT
from fault_helpers import make_small_glue, make_tiny_model
from salora_cli.core import config as cfgmod
from salora_cli.run.train import Trainer

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_runs import SteppedRun  # noqa: E402


def _config(model: Path, glue: Path, method: str) -> cfgmod.RunConfig:
    return cfgmod.build_config({
        "task": "glue/sst2", "method": method, "model": str(model), "data_dir": str(glue),
        "adapter": {"r_init": 4, "budget": 2, "prune_every": 1, "ramp_start": 0.0, "ramp_end": 0.5},
        "train": {"batch_size": 8, "max_steps": 12, "max_length": 32, "eval_every": 6, "lr": 0.01, "seed": 3}})


def _losses(folder: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (folder / "log.jsonl").open()) if "loss" in r]


def test_runs_in_turns_follow_their_own_trajectories_and_time_only_their_steps(tmp_path, shared_data):
    model = make_tiny_model(tmp_path / "tiny")
    glue = make_small_glue(shared_data / "glue", tmp_path / "glue")
    quiet = Console(file=open(os.devnull, "w"))
    for name in ("alone", "salora", "lora"):
        (tmp_path / name).mkdir()
    Trainer(_config(model, glue, "salora"), tmp_path / "alone", console=quiet).run()

    runs = [SteppedRun(m, Trainer(_config(model, glue, m), tmp_path / m, console=quiet)) for m in ("salora", "lora")]
    waits, started = 0, time.perf_counter()
    while any([r.step() for r in runs]):
        time.sleep(0.05)  # time outside the loop: counted by neither run
        waits += 1
    wall = time.perf_counter() - started
    salora, lora = runs[0].trainer.state, runs[1].trainer.state
    assert _losses(tmp_path / "salora") == _losses(tmp_path / "alone")  # removals included (prune_every 1)
    assert waits == 12 and len(salora.step_times) == len(lora.step_times) == 12
    # the sleeps and each run's time waiting for the other are disjoint from its steps: counted in,
    # the two runs' training time and the sleeps would add up to more than the loop's wall time
    assert salora.train_time_s + lora.train_time_s + 0.05 * waits <= wall
    assert sum(salora.step_times) <= salora.train_time_s + 1e-3


def test_without_a_log_the_grid_run_is_recognised_by_its_learned_ranks(tmp_path):
    # results/runs/ keeps ranks.json but no log.jsonl: SaLoRA's ranks decide, LoRA is not checked
    from types import SimpleNamespace

    from bench_runs import same_run

    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / "ranks.json").write_text(json.dumps({"modules": [{"name": "q", "rank": 3}, {"name": "v", "rank": 5}]}))

    def stepped(name: str, ranks: dict[str, int]):
        method = SimpleNamespace(rank_modules=lambda: [{"name": n, "rank": r} for n, r in ranks.items()])
        return SimpleNamespace(name=name, trainer=SimpleNamespace(method=method))

    assert same_run(stepped("salora", {"q": 3, "v": 5}), tmp_path, grid) == "ranks equal (no log kept)"
    assert same_run(stepped("salora", {"q": 3, "v": 4}), tmp_path, grid) == \
        "ranks DIFFER in 1 of 2 matrices, 7 against 8 in all (no log kept)"
    assert same_run(stepped("lora", {}), tmp_path, grid) == "not checked (no log kept)"
    (grid / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (tmp_path / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    assert same_run(stepped("lora", {}), tmp_path, grid) == "losses equal"
