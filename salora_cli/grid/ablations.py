"""`make ablations` / `salora ablate`: the effect of each SaLoRA design choice, as one table.

A profile (configs/reproduce/ablations.yaml) names tasks, seeds and variants; a variant is a set
of config overrides on top of the final design (e.g. the uniform budget push, the Frobenius
orthogonality penalty, AdaLoRA's λ = 0 init). Every (variant, task, seed) is one run under
runs/ablations/, run resumably through the same machinery as `salora reproduce` (finished runs
are skipped, interrupted ones resumed, two invocations never run the same run). The table goes to
results/ablations.md; what each number rests on is copied to results/ablations/runs/.
"""
from __future__ import annotations

import json
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from salora_cli.core import atomic
from salora_cli.core import config as cfgmod
from salora_cli.grid import reproduce
from salora_cli.core import run_dir as rd
from salora_cli.core.errors import SaloraError
from salora_cli.reports.metrics_table import DAGGER, DEGENERATE_FOOTNOTE


@dataclass
class VariantRun(reproduce.PlannedRun):
    variant: str = "design"
    label: str | None = None  # the task entry's name in the table, e.g. "sst2-50" (default: the task)

    @property
    def column(self) -> str:
        return self.label or self.task.split("/")[-1]

    @property
    def folder_name(self) -> str:
        return f"{(self.label or self.task).replace('/', '-')}_{self.variant}_seed{self.seed}"


def load_profile(path: Path) -> dict:
    profile = cfgmod.load_yaml(path)
    unknown = set(profile) - {"name", "description", "defaults", "tasks", "seeds", "variants"}
    if unknown:
        raise SaloraError(f"ablation profile {path}: unknown key(s) {sorted(unknown)}")
    for key in ("tasks", "seeds", "variants"):
        if not profile.get(key):
            raise SaloraError(f"ablation profile {path} has no {key}")
    if "design" not in profile["variants"]:
        raise SaloraError(f"ablation profile {path}: the variants must include 'design' (the reference)")
    return profile


def plan(profile: dict, tasks: list[str] | None = None, seeds: list[int] | None = None,
         variants: list[str] | None = None) -> list[VariantRun]:
    """Every (task entry, variant, seed). A task entry may carry a `label` (one task at several
    lengths: `sst2-50`, `sst2-500`); a variant may set `method` (e.g. a LoRA reference row), else
    it is SaLoRA. `tasks` matches a task, its short name or a label."""
    unknown = sorted(set(variants or []) - set(profile["variants"]))
    if unknown:
        raise SaloraError(f"unknown variant(s) {unknown}; the profile has {', '.join(profile['variants'])}")
    runs = []
    for entry in profile["tasks"]:
        task, label = entry["task"], entry.get("label")
        if tasks and not {task, task.split("/")[-1], label} & set(tasks):
            continue
        for variant, overrides in profile["variants"].items():
            if variants and variant not in variants:
                continue
            method = (overrides or {}).get("method", "salora")
            for seed in profile["seeds"]:
                if seeds is not None and seed not in seeds:
                    continue
                layers = [profile.get("defaults") or {}, entry.get("config") or {}, overrides or {},
                          {"task": task, "method": method, "train": {"seed": seed}}]
                cfg = cfgmod.build_config(*layers)  # validate every run before starting any
                runs.append(VariantRun(task, method, seed, cfg.model, layers, variant=variant, label=label))
    if not runs:
        raise SaloraError("the ablation profile and the TASKS/SEEDS/VARIANTS filters select no run")
    return runs


def run_ablations(profile_path: Path, out: Path, results: Path, console: Console, data: str | None,
                  tasks: list[str] | None = None, seeds: list[int] | None = None,
                  variants: list[str] | None = None) -> Path:
    profile = load_profile(profile_path)
    planned = plan(profile, tasks, seeds, variants)
    runs_root = out / profile["name"]
    console.rule(f"ablations: {len(planned)} runs → {runs_root}")
    for p in planned:
        reproduce._check_finished_run_matches(runs_root / p.folder_name, reproduce.planned_config(p, data))
    # the grid's claim mechanism: a run another invocation holds is left to it, then waited for
    reproduce.run_phase(planned, 1, len(planned), runs_root, data, console)
    command = shlex.join(["salora", *sys.argv[1:]])
    # the table covers every run of the profile that has finished, not only this invocation's;
    # written under the grid's results lock, so two invocations finishing together take turns
    with atomic.locked(reproduce.results_lock(results), on_wait=lambda pid: console.print(
            f"waiting for another invocation (pid {pid}) to finish writing {results}")):
        return write_table(profile, plan(profile), runs_root, results, command)


# ------------------------------------------------------------------ the table
def run_summary(run: Path) -> dict | None:
    """Main metric (best at the final budget) and how the structure was reached, for one run."""
    metrics, ranks = _read_json(run / "metrics.json"), _read_json(run / "ranks.json")
    cfg = rd.load_config(run) if (run / "config.yaml").exists() else None
    if metrics is None or ranks is None or cfg is None or not metrics.get("best"):
        return None
    main = metrics["main_metric"]
    score = {"score": metrics["best"]["metrics"][main], "degenerate": metrics["best"].get("degenerate") is True}
    if not cfg.adapter.gated:  # a fixed-rank reference row (LoRA): a score, no structure
        return {**score, "freeze_cut_pct": None, "max_rank_dev_pct": None,
                "largest_event_pct": None, "max_under_target_pct": None}
    n_init = ranks["r_init"] * ranks["n_matrices"]
    trajectory = ranks["trajectory"]
    last = trajectory[-1]
    ramp_end = cfg.adapter.ramp_end * metrics["steps"]
    after = [p for p in trajectory if p["step"] >= ramp_end and p.get("target_total")]
    return {
        **score,
        "freeze_cut_pct": 100.0 * last.get("removed_by_projection", 0) / n_init,
        "max_rank_dev_pct": max((100.0 * abs(p["total_rank"] / p["target_total"] - 1) for p in after),
                                default=float("nan")),
        **removal_events(trajectory),
    }


def removal_events(trajectory: list[dict]) -> dict[str, float]:
    """How removal followed the schedule: the largest single removal as a % of all removal, and the
    furthest the physical rank fell under the target, as a % of all removal (0 if never)."""
    removed = trajectory[0]["total_rank"] - trajectory[-1]["total_rank"]
    if removed <= 0:
        return {"largest_event_pct": 0.0, "max_under_target_pct": 0.0}
    drops = [a["total_rank"] - b["total_rank"] for a, b in zip(trajectory, trajectory[1:])]
    under = max((p["target_total"] - p["total_rank"] for p in trajectory if p.get("target_total")), default=0.0)
    return {"largest_event_pct": 100.0 * max(drops) / removed,
            "max_under_target_pct": 100.0 * max(under, 0.0) / removed}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def write_table(profile: dict, planned: list[VariantRun], runs_root: Path, results: Path,
                command: str) -> Path:
    tasks = list(dict.fromkeys(p.column for p in planned))
    variants = list(dict.fromkeys(p.variant for p in planned))
    summaries = {(p.variant, p.column, p.seed): run_summary(runs_root / p.folder_name) for p in planned}
    seeds = sorted({p.seed for p in planned})

    def scores(variant, task):
        return {s: summaries[(variant, task, s)]["score"] for s in seeds if summaries.get((variant, task, s))}

    header = ["variant", "overrides"] + [f"{t} (Δ vs design, paired)" for t in tasks] + \
             ["freeze cut, % of initial (max)", "rank off target after ramp, % (max)",
              "largest removal, % of all (max)", "under target, % of all removal (max)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    any_one_class = False  # a degenerate (single-class) checkpoint among a cell's seeds: marked, explained below
    for variant in variants:
        cells = [variant, _describe(profile["variants"][variant])]
        for task in tasks:
            mine, ref = scores(variant, task), scores("design", task)
            paired = [mine[s] - ref[s] for s in mine if s in ref]
            delta = "" if variant == "design" or not paired else f" ({statistics.mean(paired):+.2f})"
            one_class = any(summaries[(variant, task, s)]["degenerate"] for s in mine)
            any_one_class = any_one_class or one_class
            mark = DAGGER if one_class else ""
            cells.append(_mean_std(list(mine.values())) + mark + delta)
        runs = [summaries[k] for k in summaries if k[0] == variant and summaries[k]
                and summaries[k]["freeze_cut_pct"] is not None]  # a fixed-rank method has no structure
        for key in ("freeze_cut_pct", "max_rank_dev_pct", "largest_event_pct", "max_under_target_pct"):
            cells.append(f"{max(r[key] for r in runs):.1f}" if runs else "–")
        lines.append("| " + " | ".join(cells) + " |")
    missing = [p.folder_name for p in planned if summaries[(p.variant, p.column, p.seed)] is None]
    name = profile["name"]
    text = "\n".join([
        f"# SaLoRA ablations: {name}",
        "",
        f"Generated from every finished run of the profile under `{runs_root}` (config, command and "
        f"metrics of each copied to `{name}/runs/`), last by `{command}`; a run made by an earlier "
        f"invocation keeps its own command. " + (profile.get("description") or ""),
        "",
        f"Score: the task's main metric on dev, best checkpoint at the final budget; mean ± sample std "
        f"over seeds {', '.join(map(str, seeds))}; Δ: mean paired difference to `design` (same seed). "
        "Freeze cut: components the freeze projection removed (the rest were closed by their gates "
        "during training). Rank off target: the largest gap between the physical total rank and the "
        "target from the end of the ramp on. Largest removal: the most components one removal step "
        "took, as a share of all that were removed; under target: how far the physical rank fell "
        "below the target at any step, in the same unit.",
        "",
        *lines,
        "",
        *([DEGENERATE_FOOTNOTE + ".", ""] if any_one_class else []),
        *([f"Not finished (left out): {', '.join(missing)}", ""] if missing else []),
    ])
    out = results / f"{name}.md"
    atomic.write_text(out, text)
    rd.replace_folder(results / name / "runs", lambda tmp: _copy(planned, runs_root, tmp))
    return out


def _copy(planned: list[VariantRun], runs_root: Path, dest: Path) -> None:
    import shutil

    for p in planned:
        src = runs_root / p.folder_name
        if not rd.is_finished(src):
            continue
        (dest / p.folder_name).mkdir(parents=True, exist_ok=True)
        for name in ("config.yaml", "command.txt", "metrics.json", "ranks.json"):
            if (src / name).is_file():
                shutil.copyfile(src / name, dest / p.folder_name / name)


def _describe(overrides: dict | None) -> str:
    """`adapter.orth_form=frobenius, …` for the table."""
    flat = []

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat.append(f"{prefix[:-1]}={value}")

    walk("", overrides or {})
    return ", ".join(f"`{f}`" for f in flat) or "(final design)"
