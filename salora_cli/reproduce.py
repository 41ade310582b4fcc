"""`make reproduce` / `salora reproduce`: run a profile's experiment grid, then rebuild results/.

A profile (configs/reproduce/<name>.yaml) lists grid entries: a task, its methods, seeds, and
config layers (profile defaults < the entry's config_file < its config < the profile's
method_overrides). Finished runs are skipped (if their recorded config still matches the profile)
and interrupted ones resumed, so a rerun continues where it stopped. Reports go to
results/: glue.md/.csv, style.md/.csv, efficiency.md, ranks/ (a heatmap per task, one figure
comparing the rank distribution over tasks), and README.md with the command, versions, machine.
"""
from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from salora_cli import atomic
from salora_cli import config as cfgmod
from salora_cli import run_dir as rd
from salora_cli.errors import SaloraError


@dataclass
class PlannedRun:
    task: str
    method: str
    seed: int
    model: str
    layers: list[dict]

    @property
    def folder_name(self) -> str:
        model = self.model.replace("/", "-")
        return f"{self.task.replace('/', '-')}_{self.method}_{model}_seed{self.seed}"


def load_profile(path: Path) -> dict:
    profile = cfgmod.load_yaml(path)
    unknown = set(profile) - {"name", "description", "defaults", "method_overrides", "models", "grid"}
    if unknown:
        raise SaloraError(f"profile {path}: unknown key(s) {sorted(unknown)}")
    if not isinstance(profile.get("grid"), list) or not profile["grid"]:
        raise SaloraError(f"profile {path} has no grid")
    return profile


def plan(profile: dict, root: Path, tasks: list[str] | None = None, methods: list[str] | None = None,
         seeds: list[int] | None = None) -> list[PlannedRun]:
    """The runs of a profile, narrowed by TASKS / METHODS / SEEDS (short task names allowed)."""
    runs = []
    for entry in profile["grid"]:
        task = entry["task"]
        if tasks and task not in tasks and task.split("/")[-1] not in tasks:
            continue
        layers = [profile.get("defaults") or {}]
        if entry.get("config_file"):
            layers.append(cfgmod.load_yaml(root / entry["config_file"]))
        layers.append(entry.get("config") or {})
        for model in entry.get("models") or profile.get("models") or [None]:
            for method in entry["methods"]:
                if methods and method not in methods:
                    continue
                for seed in entry["seeds"]:
                    if seeds is not None and seed not in seeds:
                        continue
                    # A method's own settings (full fine-tuning's small lr) win over the task's.
                    per_method = (profile.get("method_overrides") or {}).get(method, {})
                    ls = [*layers, per_method, {"task": task, "method": method, "train": {"seed": seed}}]
                    if model:
                        ls.append({"model": model})
                    cfg = cfgmod.build_config(*ls)  # validate every run before starting any
                    runs.append(PlannedRun(task, method, seed, cfg.model, ls))
    if not runs:
        raise SaloraError("the profile and the TASKS/METHODS/SEEDS filters select no run")
    return runs


def run_grid(profile_path: Path, out: Path, results: Path, console: Console, data: str | None,
             tasks: list[str] | None = None, methods: list[str] | None = None,
             seeds: list[int] | None = None) -> None:
    from salora_cli.train import Trainer

    root = Path(__file__).resolve().parents[1]
    profile = load_profile(profile_path)
    planned = plan(profile, root, tasks, methods, seeds)
    started = time.perf_counter()
    console.rule(f"profile {profile['name']}: {len(planned)} runs → {out}")
    runs_root = out / profile["name"]
    for p in planned:  # a profile edited since a run finished must not be reported with old numbers
        _check_finished_run_matches(runs_root / p.folder_name, _planned_config(p, data))
    for i, p in enumerate(planned, 1):
        run = runs_root / p.folder_name
        if rd.is_finished(run):
            console.print(f"[dim]{i}/{len(planned)} {p.folder_name}: finished earlier, skipped[/]")
            continue
        cfg = _planned_config(p, data)
        resume = (run / "checkpoints" / "last" / "trainer_state.pt").exists()
        console.rule(f"{i}/{len(planned)} {p.folder_name}" + (" (resuming)" if resume else ""))
        run_started = time.perf_counter()
        trainer = Trainer(cfg, run, console, resume=resume)
        rd.prepare(run, cfg, resume=resume, overwrite=not resume)
        trainer.run()
        _add_wall_time(runs_root, p.folder_name, time.perf_counter() - run_started, fresh=not resume)
    build_results(runs_root, results, profile, console,
                  command=shlex.join(["salora", *sys.argv[1:]]), wall_time_s=time.perf_counter() - started)


def _planned_config(p: PlannedRun, data: str | None) -> cfgmod.RunConfig:
    cfg = cfgmod.build_config(*p.layers)
    if cfg.data_dir is None:
        cfg.data_dir = cfgmod.default_data_dir(data, cfg.task)
    return cfg


def _check_finished_run_matches(run: Path, cfg: cfgmod.RunConfig) -> None:
    if not rd.is_finished(run):
        return
    # data_dir only says where the same data lies (another machine, another checkout)
    diff = cfgmod.first_difference(rd.load_config(run), cfg, ignore=("data_dir",))
    if diff:
        key, saved, now = diff
        raise SaloraError(f"{run} finished with {key}={saved!r} but the profile now says "
                          f"{now!r}; delete that run folder to rerun it")


WALL_TIMES = "wall_times.json"  # per run: seconds spent over all invocations (load, train, eval, test)


def _add_wall_time(runs_root: Path, name: str, seconds: float, fresh: bool) -> None:
    times = _wall_times(runs_root)
    times[name] = round((0.0 if fresh else times.get(name, 0.0)) + seconds, 1)  # a rerun from scratch replaces
    atomic.write_json(runs_root / WALL_TIMES, times)


def _wall_times(runs_root: Path) -> dict:
    try:
        return json.loads((runs_root / WALL_TIMES).read_text())
    except (OSError, ValueError):
        return {}


def build_results(runs_root: Path, results: Path, profile: dict, console: Console, command: str,
                  wall_time_s: float | None = None) -> None:
    """Every table and figure in results/, from the finished runs under runs_root."""
    from salora_cli.reports import (build_metrics_report, build_rank_report, compare_rank_distributions,
                                    find_runs)
    from salora_cli.reports.efficiency import build_efficiency_report
    from salora_cli.reports.runs import first_seed_per_task

    scan = find_runs([runs_root])
    # runs/ is not committed; what every number rests on (config, command, metrics, ranks, outputs)
    # is copied into results/runs/, and the tables and rank maps are built from that copy.
    rd.replace_folder(results / "runs", lambda tmp: _copy_provenance(scan.runs, runs_root, tmp))
    mirrored = find_runs([results / "runs"])
    written = []
    for family in ("glue", "style"):
        runs = [r for r in mirrored.runs if r.family == family]
        if runs:
            report = build_metrics_report(runs)
            report.print(console)
            written += report.write(results, family)
    ranks_dir = results / "ranks"
    rank_reports = []
    for task, run in first_seed_per_task(mirrored.runs, "salora").items():
        report = build_rank_report(run.path)
        rank_reports.append(report)
        written += report.write(ranks_dir / task.replace("/", "-"))
    if rank_reports:
        written.append(compare_rank_distributions(rank_reports, ranks_dir / "distribution.png"))
    written.append(build_efficiency_report(scan.runs, results / "efficiency.md"))
    grid_s = sum(_wall_times(runs_root).values()) or None
    _write_readme(results, profile, command, wall_time_s, grid_s, [p for p in written if p])
    console.print(f"results written to {results}")


PROVENANCE = ("config.yaml", "command.txt", "env.json", "metrics.json", "ranks.json", "generations.jsonl")


def _copy_provenance(runs, runs_root: Path, dest: Path) -> None:
    if (runs_root / WALL_TIMES).is_file():
        shutil.copyfile(runs_root / WALL_TIMES, dest / WALL_TIMES)
    for run in runs:
        folder = dest / run.path.name
        folder.mkdir(parents=True, exist_ok=True)
        for name in PROVENANCE:
            if (run.path / name).is_file():
                shutil.copyfile(run.path / name, folder / name)


def _write_readme(results: Path, profile: dict, command: str, wall_time_s: float | None,
                  grid_s: float | None, written: list[Path]) -> None:
    from salora_cli.run_dir import environment

    env = environment(1, "cpu", "no")
    files = "\n".join(f"- `{p.relative_to(results)}`" for p in sorted(set(written)) if p.is_relative_to(results))
    text = f"""# results/ — regenerated by `make reproduce`, never edited by hand

Profile **{profile['name']}**: {profile.get('description', '')}
(`configs/reproduce/{profile['name']}.yaml` holds the grid, the hyperparameters and how the budget is
matched across methods.)

Command: `{command}`
{f"Wall time of the grid: {grid_s / 60:.1f} min, the sum over its runs of model loading, training, evaluation and test generation, over every invocation that worked on them (`runs/{WALL_TIMES}`)." if grid_s else ""}
{f"Time this invocation spent on runs: {wall_time_s / 60:.1f} min (finished runs are skipped, so a rerun that only rebuilds the reports spends none)." if wall_time_s else ""}

Versions and machine: Python {env['python']}, torch {env['torch']}, transformers {env['transformers']},
peft {env['peft']}, accelerate {env['accelerate']}; {env['platform']}, {env['cpu_count']} CPUs,
{env['torch_threads']} torch threads{', GPU ' + env['cuda'] if env['cuda'] else ', no GPU'}.

Each run's record (config.yaml, command.txt, env.json, metrics.json, ranks.json and, for style
transfer, generations.jsonl) is copied from `runs/reproduce/{profile['name']}/` into `runs/` here; the
tables and rank maps are built from those copies only (efficiency.md's inference timing also
reloads the runs' saved adapters, which stay under `runs/reproduce/`).

## Files
- `glue.md` / `glue.csv`: task × method, mean ± sample std over seeds (n shown), main metric at the
  best dev checkpoint among those at the final budget, the final checkpoint beside it, trainable
  parameters initial → final, train time.
- `style.md` / `style.csv`: Yelp / GYAFC on the test split: BLEU, self-BLEU, style accuracy (the
  runner's own classifier; its held-out accuracy is in each run's metrics.json), perplexity, G-score,
  and sample rewrites.
- `efficiency.md`: train time per epoch, step time relative to LoRA on the same task, peak memory;
  inference time of each GLUE task's merged SaLoRA model against the base model, measured side by
  side when this file is built.
- `ranks/<task>/`: the learned rank per layer × module (`ranks.md`, `ranks_heatmap.png`) and the rank
  trajectory (`rank_trajectory.png`) of the first SaLoRA seed; `ranks/distribution.png` compares where
  the rank went (module types, depth) across tasks.

{files}
"""
    atomic.write_text(results / "README.md", text)
