"""`make reproduce` / `salora reproduce`: run a profile's experiment grid, then rebuild results/.

A profile (configs/reproduce/<name>.yaml) lists grid entries: a task, its methods, seeds, and
config layers (profile defaults < the entry's config_file < its config < the profile's
method_overrides < the protocol's budget and grid lr, see salora_cli/grid/protocol.py). Finished runs
are skipped (if their recorded config still matches the profile) and interrupted ones resumed, so a
rerun continues where it stopped. With an lr grid the grid runs in two phases: seed 0 at every grid
lr, then the lr choice, then the other seeds at the chosen lr. Reports go to results/: glue.md/.csv
(one table per rank budget), style.md/.csv, selection.md/.json (the lr choice), efficiency.md,
ranks/ (a heatmap per task, one figure comparing the rank distribution over tasks), and README.md
with the command, versions, machine and the protocol.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from salora_cli.core import atomic
from salora_cli.core import config as cfgmod
from salora_cli.grid import protocol
from salora_cli.core import run_dir as rd
from salora_cli.core.errors import SaloraError
from salora_cli.grid.protocol import PlannedRun

__all__ = ["PlannedRun", "build_results", "load_profile", "plan", "planned_config", "run_grid", "wall_time_part"]


def load_profile(path: Path) -> dict:
    profile = cfgmod.load_yaml(path)
    if not isinstance(profile.get("grid"), list) or not profile["grid"]:
        raise SaloraError(f"profile {path} has no grid")
    protocol.validate(profile, path)  # unknown keys, budgets, lr grids
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
                # A method's own settings (full fine-tuning's small lr) win over the task's.
                per_method = (profile.get("method_overrides") or {}).get(method, {})
                for budget in protocol.entry_budgets(profile, entry, method):
                    for lr in protocol.entry_lrs(profile, entry, method):
                        # the protocol (budget, grid lr) wins over every config layer
                        fixed = [budget.layer(method)] if budget else []
                        grid_lr = {"lr": lr} if lr is not None else {}
                        for seed in entry["seeds"]:
                            if seeds is not None and seed not in seeds:
                                continue
                            ls = [*layers, per_method, *fixed,
                                  {"task": task, "method": method, "train": {**grid_lr, "seed": seed}}]
                            if model:
                                ls.append({"model": model})
                            cfg = cfgmod.build_config(*ls)  # validate every run before starting any
                            runs.append(PlannedRun(task, method, seed, cfg.model, ls,
                                                   budget=budget.budget if budget else None, lr=lr,
                                                   selection_seed=entry["seeds"][0] if lr is not None else None,
                                                   transfer=protocol.entry_transfer(entry)))
    if not runs:
        raise SaloraError("the profile and the TASKS/METHODS/SEEDS filters select no run")
    return runs


def run_grid(profile_path: Path, out: Path, results: Path, console: Console, data: str | None,
             tasks: list[str] | None = None, methods: list[str] | None = None,
             seeds: list[int] | None = None, report: bool = True, estimates: dict | None = None) -> None:
    """Run a profile's grid (resumable, in parts) and rebuild results/. `estimates`: the plan's cost
    per part (salora_cli.grid.plan.part_estimates), set beside the measured wall times in results/README.md."""
    root = Path(__file__).resolve().parents[2]
    profile = load_profile(profile_path)
    planned = plan(profile, root, tasks, methods, seeds)
    # the lr choice rests on seed 0 whatever SEEDS says (a run of seeds 1,2 uses an earlier seed 0)
    every_seed = plan(profile, root, tasks, methods)
    started = time.perf_counter()
    first = protocol.phase_one(planned)
    total = len(first) + protocol.phase_two_count(planned)
    console.rule(f"profile {profile['name']}: {total} runs → {out}")
    runs_root = out / profile["name"]
    steps = profile.get("widen_lr_grid", 0)
    # the committed record decides any widening it made, so its widened runs are restored too; every
    # part of the profile is restored, not only the tasks asked for: the report step rebuilds
    # results/ from runs_root, and a part run on a fresh machine must keep the parts committed before it
    whole = plan(profile, root)
    restored = restore_committed(results / "runs", runs_root, protocol.widen(whole, results / "runs", steps), data)
    if restored:
        console.print(f"{len(restored)} finished run(s) taken from {results / 'runs'} (a part of the grid "
                      f"run in an earlier sitting, maybe on another machine): not run again")
    for p in planned:  # a profile edited since a run finished must not be reported with old numbers
        _check_finished_run_matches(runs_root / p.folder_name, planned_config(p, data))
    run_phase(first, 1, total, runs_root, data, console)
    done = len(first)
    profile_grid = every_seed  # widening counts its steps from the profile's grid, never a widened one
    while True:  # a choice at the edge of its grid runs seed 0 one step further, until none is
        widened = protocol.widen(profile_grid, runs_root, steps)
        known = {p.folder_name for p in every_seed}
        new = [p for p in widened[len(profile_grid):] if p.folder_name not in known and (seeds is None or p.seed in seeds)]
        every_seed, planned = widened, planned + new
        extra = [p for p in new if p.selects]
        if not extra:
            break
        console.print(f"the lr grid widens: {', '.join(p.folder_name for p in extra)}")
        total += len(extra)
        run_phase(extra, done + 1, total, runs_root, data, console)
        done += len(extra)
    choices = protocol.select(every_seed, runs_root)
    second, waiting = protocol.phase_two(planned, choices)
    _report_choices(choices, waiting, console)
    run_phase(second, done + 1, total, runs_root, data, console)  # numbered after the widened runs
    run_transfers(planned, runs_root, profile.get("transfer_options") or {}, console)
    if not report:
        return
    with atomic.locked(results_lock(results), on_wait=lambda pid: console.print(
            f"waiting for another invocation (pid {pid}) to finish writing {results}")):
        build_results(runs_root, results, profile, console,
                      command=shlex.join(["salora", *sys.argv[1:]]), wall_time_s=time.perf_counter() - started,
                      estimates=estimates, front_page=front_page_of(results, root))


def run_transfers(planned: list[PlannedRun], runs_root: Path, options: dict, console: Console) -> None:
    """The task-agnostic step (issue 18): every finished run of an entry with `transfer: [task, ...]`
    rewrites those style test sets zero-shot into RUN/transfer/<task>, and so does each such entry's
    base model without adapter, into runs_root/transfer/<model>/<task> (a row of its own). A finished
    transfer is skipped; one that was interrupted left nothing (its folder is swapped in whole) and
    runs again; a finished one whose outcome labels an older version of the output checks made gets them
    redone from its generations (transfer.relabel_folder). `options`: TransferConfig fields the profile
    sets for every transfer (transfer_options)."""
    from salora_cli.transfer.transfer import (RUN_SUBFOLDER, is_transfer_folder, needs_relabelling, relabel_folder,
                                     resolve_subject, run_transfer)
    from salora_cli.transfer.transfer_config import TransferConfig

    jobs: list[tuple[str, str, Path]] = []
    for p in planned:
        for task in p.transfer:
            base = resolve_subject(p.model)
            base_job = (p.model, task, runs_root / RUN_SUBFOLDER / base.label / task)
            if base_job not in jobs:
                jobs.append(base_job)
            run = runs_root / p.folder_name
            if rd.is_finished(run):
                jobs.append((str(run), task, run / RUN_SUBFOLDER / task))
    def attempt(i: int, subject: str, task: str, folder: Path) -> bool:
        """Do (or skip) one transfer; False while another invocation holds it, as for runs."""
        label = f"transfer {i}/{len(jobs)} {folder}"
        claim = runs_root / f".{_TRANSFER_KEY}-{'--'.join(folder.relative_to(runs_root).parts)}.lock"
        fd = _claim(claim, label, "being done", told, console)
        if fd is None:
            return False
        try:
            settings = TransferConfig(task=task, **options)
            if is_transfer_folder(folder):
                _check_finished_transfer_matches(folder, settings)
                if needs_relabelling(folder):  # the output checks changed since: labels redone, nothing generated
                    shares = relabel_folder(folder)
                    console.print(f"{label}: finished earlier, outcome labels redone by "
                                  f"today's checks (off-task {shares['share_off_task']:.1f} %)")
                else:
                    by = "by another invocation" if label in told else "earlier"
                    console.print(f"[dim]{label}: finished {by}, skipped[/]")
                return True
            started = time.perf_counter()
            run_transfer(subject, settings, folder, overwrite=False, console=console)
            # loading, generation and scoring; a part of its own in the wall-time table
            _add_wall_time(runs_root, f"{_TRANSFER_KEY}:{folder.relative_to(runs_root)}",
                           time.perf_counter() - started, fresh=True)
        finally:
            atomic.unlock(claim, fd)
        return True

    # `make reproduce JOBS=2`: each invocation claims a transfer before it generates, so the two share
    # the transfers instead of both generating every one
    told: set[str] = set()
    _until_done([(i, *job) for i, job in enumerate(jobs, 1)], attempt)


CLAIM_POLL_S = 2.0  # how often a run held by another invocation is looked at again


def run_phase(runs: list[PlannedRun], first_number: int, total: int, runs_root: Path, data: str | None,
              console: Console) -> None:
    """Run (or skip, or resume) every run of a phase; returns once all of them are finished."""
    told: set[str] = set()
    _until_done([(f"{i}/{total}", p) for i, p in enumerate(runs, first_number)],
                lambda n, p: _claim_and_run(n, p, runs_root, data, console, told))


def _until_done(pending: list[tuple], attempt) -> None:
    """Call attempt(*item) for every item until each has returned True: an item another invocation
    holds (False) is left for it, then waited for, or taken over once its holder lets go."""
    while pending:
        pending = [item for item in pending if not attempt(*item)]
        if pending:
            time.sleep(CLAIM_POLL_S)


def _claim(claim: Path, label: str, doing: str, told: set[str], console: Console) -> int | None:
    """This invocation's lock on `claim`, or None while another invocation holds it (said once per label,
    which goes into `told`)."""
    fd = atomic.try_lock(claim)
    if fd is None and label not in told:
        told.add(label)
        console.print(f"{label}: {doing} by another invocation (pid {atomic.lock_holder(claim)}); "
                      "skipped for now, waited for at the end")
    return fd


def _report_choices(choices: list[protocol.Choice], waiting: list[protocol.Choice], console: Console) -> None:
    for c in choices:
        if c.chosen is None:
            continue
        scores = ", ".join(f"{protocol.lr_text(lr)} {'—' if s is None else f'{s:.2f}'}"
                           for lr, s in sorted(c.finished.items()))
        budget = "" if c.budget is None else f" · budget {c.budget}"
        console.print(f"lr for {c.task} · {c.method}{budget}: {protocol.lr_text(c.chosen)} "
                      f"(seed {c.seed} dev {c.metric}: {scores})")
    for c in waiting:  # only when SEEDS left seed 0 out and no earlier invocation ran it
        console.print(f"[yellow]{c.task} · {c.method}" + ("" if c.budget is None else f" · budget {c.budget}")
                      + f": no lr chosen yet (seed {c.seed} not finished at lr "
                      + ", ".join(map(protocol.lr_text, c.missing)) + "); its other seeds wait for it[/]")


def _claim_and_run(n: str, p: PlannedRun, runs_root: Path, data: str | None, console: Console,
                   told: set[str]) -> bool:
    """Run `p` unless it is finished; False while another invocation holds it (its lock file beside
    the run folder: two `make reproduce` at once never train one run twice)."""
    run, label = runs_root / p.folder_name, f"{n} {p.folder_name}"
    if rd.is_finished(run):
        by = "by another invocation" if label in told else "earlier"
        console.print(f"[dim]{label}: finished {by}, skipped[/]")
        return True
    claim = runs_root / f".{p.folder_name}.lock"
    fd = _claim(claim, label, "being run", told, console)
    if fd is None:
        return False
    try:
        if rd.is_finished(run):  # the other invocation finished it while we looked
            console.print(f"[dim]{n} {p.folder_name}: finished by another invocation, skipped[/]")
            return True
        _run_one(n, p, run, runs_root, data, console)
    finally:
        atomic.unlock(claim, fd)
    return True


def _run_one(n: str, p: PlannedRun, run: Path, runs_root: Path, data: str | None, console: Console) -> None:
    from salora_cli.transfer.style_scoring import attach_scorers
    from salora_cli.run.train import CHECKPOINT, Trainer

    cfg = planned_config(p, data)
    resume = rd.completed_folder(run / CHECKPOINT, "trainer_state.pt") is not None
    console.rule(f"{n} {p.folder_name}" + (" (resuming)" if resume else ""))
    run_started = time.perf_counter()
    try:
        trainer = Trainer(cfg, run, console, resume=resume, scorers=attach_scorers)
        rd.prepare(run, cfg, resume=resume, overwrite=not resume)
        trainer.run()
    finally:
        # an interrupted invocation's time counts too (the next one resumes and adds its own); only a
        # process killed outright (SIGKILL) leaves its time unrecorded
        _add_wall_time(runs_root, p.folder_name, time.perf_counter() - run_started, fresh=not resume)


def restore_committed(committed: Path, runs_root: Path, planned: list[PlannedRun], data: str | None) -> list[str]:
    """Bring back the finished runs a grid committed to results/runs/ in earlier sittings.

    runs/ is not committed, so a grid that runs in parts over several sittings (possibly on fresh
    machines) would otherwise run every earlier part again, and the report step would drop their
    copies. A planned run with no folder under runs_root is restored from its committed record
    (config, command, metrics, ranks, its transfers, and its recorded wall time) when that record
    is finished and its config is what the profile now plans; any other is left to run. The
    restored folder has no weights, so what needs them (efficiency.md's inference timing) skips it.
    """
    restored = []
    for p in planned:
        src, dest = committed / p.folder_name, runs_root / p.folder_name
        if dest.exists() or not rd.is_finished(src) or not (src / "config.yaml").is_file():
            continue
        if cfgmod.first_difference(rd.load_config(src), planned_config(p, data), ignore=("data_dir",)):
            continue  # made with other settings (an edited profile, an older design): rerun it
        runs_root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest)
        restored.append(p.folder_name)
    if restored:
        with atomic.locked(runs_root / f".{WALL_TIMES}.lock"):
            for file in (WALL_TIMES, SPANS):
                times = _wall_times(runs_root, file)
                for name, value in _wall_times(committed, file).items():
                    owner = name.split(":", 1)[1].split("/", 1)[0] if name.startswith(f"{_TRANSFER_KEY}:") else name
                    if owner in restored and name not in times:
                        times[name] = value
                atomic.write_json(runs_root / file, times)
    return restored


def results_lock(results: Path) -> Path:
    # beside results/, not in it: results/ is committed
    return results.with_name(f".{results.name}.lock")


def planned_config(p: PlannedRun, data: str | None) -> cfgmod.RunConfig:
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


def _check_finished_transfer_matches(folder: Path, settings) -> None:
    """A finished transfer made with other settings (fewer sources, other decoding) is not this
    profile's: say so rather than table it or write over it."""
    saved = (cfgmod.load_yaml(folder / "config.yaml") or {}).get("transfer") or {}
    now = {k: v for k, v in dataclasses.asdict(settings).items() if k in saved}  # fields added since: no change
    diff = cfgmod.first_dict_difference(saved, now, ignore=("data_dir",))
    if diff:
        key, before, after = diff
        raise SaloraError(f"{folder} was generated with {key}={before!r} but the profile now says "
                          f"{after!r}; delete that folder to rerun it")


WALL_TIMES = "wall_times.json"  # per run: seconds spent over all invocations (load, train, eval, test)
SPANS = "run_spans.json"  # per run: when each invocation worked on it, [start, end] in Unix seconds
_TRANSFER_KEY = "transfer"  # a transfer's entry: transfer:<its folder under runs_root> (also the base model's folder)


def _add_wall_time(runs_root: Path, name: str, seconds: float, fresh: bool) -> None:
    end = time.time()
    with atomic.locked(runs_root / f".{WALL_TIMES}.lock"):  # read-modify-write, shared by invocations
        times = _wall_times(runs_root)
        times[name] = round((0.0 if fresh else times.get(name, 0.0)) + seconds, 1)  # a rerun from scratch replaces
        atomic.write_json(runs_root / WALL_TIMES, times)
        spans = _wall_times(runs_root, SPANS)
        spans[name] = ([] if fresh else spans.get(name, [])) + [[round(end - seconds, 1), round(end, 1)]]
        atomic.write_json(runs_root / SPANS, spans)


def _wall_times(runs_root: Path, name: str = WALL_TIMES) -> dict:
    try:
        return json.loads((runs_root / name).read_text())
    except (OSError, ValueError):
        return {}


def clock_minutes(spans: list[list[float]]) -> float:
    """Minutes covered by the union of [start, end] spans: a part's wall-clock time when several
    invocations ran its runs side by side (`make reproduce JOBS=2`), the runs' sum when one did."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            covered += end - max(start, reach)
            reach = end
    return covered / 60


def front_page_of(results: Path, root: Path) -> Path | None:
    """The project's README.md when `results` is the project's own results/ (its summary is rebuilt
    with it); None for a results folder elsewhere, whose numbers must not reach the front page."""
    return root / "README.md" if results.resolve() == (root / "results").resolve() else None


def build_results(runs_root: Path, results: Path, profile: dict, console: Console, command: str,
                  wall_time_s: float | None = None, estimates: dict | None = None,
                  front_page: Path | None = None) -> None:
    """Every table and figure in results/, from the finished runs under runs_root. `estimates`: the
    plan's cost per part (salora_cli.grid.plan.part_estimates), set beside the measured wall times.
    `front_page`: a README whose results-summary markers get the GLUE summary (reports/front_page.py)."""
    from salora_cli.reports import build_rank_report, compare_rank_distributions, find_runs
    from salora_cli.reports.efficiency import build_efficiency_report
    from salora_cli.reports.magnitudes import write_for_grid as write_magnitudes
    from salora_cli.reports.rank_shares import write_for_grid as write_rank_shares
    from salora_cli.reports.runs import first_seed_per_task

    every = protocol.widen(plan(profile, Path(__file__).resolve().parents[2]), runs_root,
                           profile.get("widen_lr_grid", 0))
    scan = find_runs([runs_root])
    planned = _planned_runs([r for r in scan.runs if r.family != "transfer"], {p.folder_name for p in every}, console)
    transfers = _planned_transfers(scan.runs, planned, runs_root)
    # runs/ is not committed; what every number rests on (config, command, metrics, ranks, outputs)
    # is copied into results/runs/, and the tables and rank maps are built from that copy.
    rd.replace_folder(results / "runs", lambda tmp: _copy_provenance(planned + transfers, runs_root, tmp))
    # the lr choice is made again from the copies, so results/ alone shows how it was made
    choices = protocol.select(every, results / "runs")
    shown = protocol.reported(every, choices)  # folder -> budget: the runs the tables hold
    copies = find_runs([results / "runs"]).runs
    mirrored = [r for r in copies if r.path.name in shown and r.family != "transfer"]
    written = protocol.write_selection(choices, results)
    mirrored_transfers = [r for r in copies if r.family == "transfer"]
    if mirrored_transfers:  # the task-agnostic style.md; the task-specific runs follow as an alternative
        from salora_cli.reports.style_report import write_style_report

        written += write_style_report(mirrored_transfers, results, [r for r in mirrored if r.family == "style"])
    overviews: list = []  # the GLUE overviews: README's verdicts and the front page's summary
    for family in ("glue", "style", "instruct"):
        runs = [r for r in mirrored if r.family == family]
        if family == "style" and mirrored_transfers:
            continue
        if runs:
            report = _family_report(runs, shown, profile, family, lr_selected=bool(choices))
            report.print(console)
            written += report.write(results, family)
            written += _glue_overview_files(report, results, overviews)
    # rank maps and timings show one budget (the first listed), so runs of two budgets never mix
    main = protocol.main_budget(profile)
    at_main = {name for name, budget in shown.items() if budget in (main, None)}
    ranks_dir = results / "ranks"
    rank_reports = []
    for task, run in first_seed_per_task([r for r in mirrored if r.path.name in at_main], "salora").items():
        report = build_rank_report(run.path)
        rank_reports.append(report)
        written += report.write(ranks_dir / task.replace("/", "-"))
    if rank_reports:
        written.append(compare_rank_distributions(rank_reports, ranks_dir / "distribution.png"))
        selecting = {p.folder_name for p in every if p.selects and p.budget in (main, None)}
        written.append(write_rank_shares([r for r in mirrored if r.path.name in at_main], ranks_dir / "shares.md",
                                         [r for r in copies if r.path.name in selecting]))
    written.append(build_efficiency_report([r for r in planned if r.path.name in at_main], results / "efficiency.md"))
    # component sizes need the adapters, which only the run folders (not results/runs/) hold
    written += write_magnitudes([r for r in planned if r.path.name in at_main], results)
    removed = remove_stale(results, written)
    if removed:
        console.print(f"removed {len(removed)} file(s) of an earlier grid this one no longer writes: "
                      + ", ".join(str(p.relative_to(results)) for p in removed))
    times = _grid_wall_times(runs_root, every)
    clocks = part_clocks(times, _grid_wall_times(runs_root, every, SPANS))
    missing = _unfinished(every, choices, {r.path.name for r in planned})
    verdicts = [line for overview in overviews for line in overview.verdict_lines()]
    _write_readme(results, profile, command, wall_time_s, times, clocks, [p for p in written if p], missing,
                  verdicts, estimates or {})
    if front_page is not None:
        from salora_cli.reports.front_page import write_summary

        if write_summary(front_page, overviews, profile["name"],
                         link=os.path.relpath(results, front_page.parent)):
            console.print(f"results summary written to {front_page}")
    console.print(f"results written to {results}")


# What the report step writes into results/; other make targets own the rest (ablations.md,
# lengths.md, schedule.md, step_time.md, gpu_check.md and their folders), and README.md is rewritten.
REPORT_FILES = ("glue.md", "glue.csv", "glue.png", "selection.md", "selection.json", "instruct.md",
                "instruct.csv", "style.md", "style.csv", "style_transfer.csv", "efficiency.md",
                "magnitudes.md", "magnitudes.png")
REPORT_FOLDERS = ("ranks", "curves")


def remove_stale(results: Path, written: list[Path]) -> list[Path]:
    """Delete the report files an earlier grid wrote that this rebuild did not (a task or method the
    profile no longer holds, a part not run yet): results/ shows only what the current runs support."""
    keep = {p.resolve() for p in written if p}
    candidates = [results / name for name in REPORT_FILES]
    candidates += [f for folder in REPORT_FOLDERS for f in sorted((results / folder).rglob("*")) if f.is_file()]
    stale = [f for f in candidates if f.is_file() and f.resolve() not in keep]
    for f in stale:
        f.unlink()
    for folder in REPORT_FOLDERS:  # deepest first, so a folder emptied of folders goes too
        for d in sorted((results / folder).rglob("*"), key=lambda d: -len(d.parts)) + [results / folder]:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return stale


def _glue_overview_files(report, results: Path, overviews: list) -> list[Path]:
    """glue.png and the learning curves of the tasks not learned, from the GLUE overview of a
    report that has one; the overviews are added to `overviews` (README's verdicts, the front page)."""
    mine = getattr(report, "overviews", None)
    if not mine:
        return []
    from salora_cli.reports.glue_figures import write_glue_figures

    overviews += mine
    return write_glue_figures(mine, results)


def _unfinished(every: list[PlannedRun], choices: list, finished: set[str]) -> list[str]:
    """Planned runs not finished yet (at a chosen lr, where an lr is chosen), for the README."""
    reported = protocol.reported(every, choices)
    pending = [p.folder_name for p in every if p.folder_name not in finished
               and (not p.tuned or p.seed == p.selection_seed or p.folder_name in reported)]
    undecided = sum(1 for c in choices if c.chosen is None)
    return pending + ([f"the later seeds of {undecided} group(s) whose lr is not chosen yet"] if undecided else [])


def _planned_runs(runs: list, names: set[str], console: Console) -> list:
    """The finished runs the profile plans; others (an older profile's folders) are left out of results/."""
    left_out = sorted(r.path.name for r in runs if r.path.name not in names)
    if left_out:
        console.print(f"[dim]{len(left_out)} finished run folder(s) not in the profile's plan, left out of "
                      f"the results: {', '.join(left_out)}[/]")
    return [r for r in runs if r.path.name in names]


def _family_report(runs: list, budget_of: dict[str, int | None], profile: dict, family: str, lr_selected: bool):
    """GLUE under budgets: one table per budget; otherwise (and for style transfer at a single
    budget) the usual task × method report."""
    from salora_cli.reports import build_metrics_report
    from salora_cli.reports.budget_tables import build_budget_tables
    from salora_cli.reports.glue_overview import majority_scores

    budgets = protocol.parse_budgets(profile.get("budgets"), "profile")
    spans = {budget_of[r.path.name] for r in runs} - {None}
    if budgets and (family == "glue" or len(spans) > 1):
        # majority: each GLUE task's majority-class score on the split reported (recorded, or from the data)
        tables = build_budget_tables(runs, budget_of, {b.budget: b.r_init for b in budgets}, lr_selected,
                                     majority=majority_scores(runs))
        if tables:
            return tables
    return build_metrics_report(runs)


PROVENANCE = ("config.yaml", "command.txt", "env.json", "metrics.json", "ranks.json", "generations.jsonl")


def _planned_transfers(runs: list, planned: list, runs_root: Path) -> list:
    """Zero-shot transfer folders (salora transfer) of the planned runs (RUN/transfer/<task>) and of
    base models (under runs_root, e.g. runs_root/transfer/<model>/<task>)."""
    planned_dirs = {r.path.resolve() for r in planned}
    out = []
    for run in runs:
        if run.family != "transfer":
            continue
        subject = run.raw.get("subject_run")
        if (Path(subject).resolve() in planned_dirs) if subject else run.path.resolve().is_relative_to(runs_root.resolve()):
            out.append(run)
    return out


def _inside(path: Path, runs_root: Path) -> Path:
    """A transfer folder's place below runs_root (<run>/transfer/<task>), or <run>/transfer/<task> by name."""
    try:
        return path.resolve().relative_to(runs_root.resolve())
    except ValueError:
        return Path(path.parent.parent.name) / path.parent.name / path.name


def _copy_provenance(runs, runs_root: Path, dest: Path) -> None:
    for file in (WALL_TIMES, SPANS):
        if (runs_root / file).is_file():
            shutil.copyfile(runs_root / file, dest / file)
    for run in runs:
        # a transfer folder keeps its place below its run (or below runs_root); a run its own name
        folder = dest / (_inside(run.path, runs_root) if run.family == "transfer" else run.path.name)
        folder.mkdir(parents=True, exist_ok=True)
        for name in PROVENANCE:
            if (run.path / name).is_file():
                shutil.copyfile(run.path / name, folder / name)


def _grid_wall_times(runs_root: Path, every: list[PlannedRun], file: str = WALL_TIMES) -> dict:
    """The recorded wall times (or, file=SPANS, their spans) of the profile's runs and of their
    transfers (and the base model's): a run the profile no longer holds (a cut baseline) is not part
    of the grid's total."""
    names = {p.folder_name for p in every}

    def in_profile(name: str) -> bool:
        if name.startswith(f"{_TRANSFER_KEY}:"):  # transfer:<run>/transfer/<task> or transfer:transfer/<model>/<task>
            owner = name.split(":", 1)[1].split("/", 1)[0]
            return owner in names or owner == _TRANSFER_KEY
        return name in names
    return {name: s for name, s in _wall_times(runs_root, file).items() if in_profile(name)}


def wall_time_part(name: str) -> str:
    """The part a wall_times.json entry is summed in: a task's runs (the folder name's task prefix), and
    the zero-shot transfers (recorded since 2026-12-01) as one part of their own. The plan
    (salora_cli/grid/plan.py) sums its estimates by the same parts."""
    return "zero-shot transfers" if name.startswith(f"{_TRANSFER_KEY}:") else name.split("_", 1)[0]


def part_clocks(times: dict[str, float], spans: dict[str, list]) -> dict[str, float]:
    """Each part's wall-clock minutes (clock_minutes over its runs' spans), for the parts whose every
    timed run has its spans (runs timed before spans were recorded leave their part out)."""
    grouped: dict[str, list | None] = {}
    for name in times:
        part = wall_time_part(name)
        have = grouped.setdefault(part, [])
        grouped[part] = None if have is None or name not in spans else have + spans[name]
    return {part: clock_minutes(runs) for part, runs in grouped.items() if runs}


def _parts_markdown(times: dict[str, float], clocks: dict[str, float]) -> str:
    """Summed wall time per part (wall_time_part), and its wall-clock time where it is known."""
    parts: dict[str, float] = {}
    for name, seconds in times.items():
        part = wall_time_part(name)
        parts[part] = parts.get(part, 0.0) + seconds
    return ", ".join(f"{part} {seconds / 60:.1f} min" + (f" ({clocks[part]:.1f} min wall-clock)" if part in clocks else "")
                     for part, seconds in parts.items())


def _estimates_markdown(times: dict[str, float], estimates: dict, clocks: dict[str, float] | None = None) -> str:
    """Each part's measured time beside the plan's CPU estimate for it, and their ratio once every run
    the plan counts in the part has a recorded time (a part in progress has no ratio). The ratio is
    taken on the part's wall-clock time where it is known (runs side by side count once), else on the
    runs' sum."""
    if not estimates:
        return ""
    clocks = clocks or {}
    measured: dict[str, list[float]] = {}
    for name, seconds in times.items():
        measured.setdefault(wall_time_part(name), []).append(seconds)
    lines = ["| part | runs timed / planned | summed over runs (min) | wall-clock (min) | estimated, CPU (min) "
             "| measured ÷ estimated |", "|---|---:|---:|---:|---:|---:|"]
    for part, est in estimates.items():
        done = measured.get(part, [])
        minutes = sum(done) / 60
        clock = clocks.get(part)
        spent = minutes if clock is None else clock
        ratio = f"{spent / (est.cpu_hours * 60):.2f}" if done and len(done) >= est.runs and est.cpu_hours else "—"
        lines.append(f"| {part} | {len(done)} / {est.runs} | {minutes:.1f} | {'—' if clock is None else f'{clock:.1f}'} "
                     f"| {est.cpu_hours * 60:.1f} | {ratio} |")
    return ("The plan's estimate per part (`salora reproduce --profile NAME --plan`, its cost model in "
            "`salora_cli/grid/cost_model.py`) beside the measured time; the planned runs count each later "
            "seed once, whichever lr is chosen, and not the runs a widened lr grid adds:\n\n"
            + "\n".join(lines) + "\n")


def _verdicts_markdown(lines: list[str]) -> str:
    """README's verdict section: the GLUE overview's verdict lines, as glue.md computes them."""
    if not lines:
        return ""
    return "## Verdict (GLUE, from `glue.md`)\n\n" + "\n".join(f"- {line}" for line in lines) + "\n\n"


def _write_readme(results: Path, profile: dict, command: str, wall_time_s: float | None,
                  times: dict[str, float], clocks: dict[str, float], written: list[Path], missing: list[str] = (),
                  verdicts: list[str] = (), estimates: dict | None = None) -> None:
    from salora_cli.core.run_dir import environment

    env = environment(1, "cpu", "no")
    files = "\n".join(f"- `{p.relative_to(results)}`" for p in sorted(set(written)) if p.is_relative_to(results))
    rule = protocol.protocol_markdown(profile)
    main = protocol.main_budget(profile)
    grid_s = sum(times.values())
    text = f"""# results/ — regenerated by `make reproduce`, never edited by hand

Profile **{profile['name']}**: {profile.get('description', '')}
(`configs/reproduce/{profile['name']}.yaml` holds the grid, the hyperparameters and how the budget is
matched across methods.)

To regenerate it: `make reproduce PROFILE={profile['name']}` from the project root (the same as
`salora reproduce --profile {profile['name']}`: runs under `runs/reproduce/{profile['name']}/`, tables
here; finished runs are skipped, so it may span several sittings).
This file was last written by: `{command}`
{f"**This grid is incomplete**: {len(missing)} planned run(s) not finished yet ({', '.join(missing)}); the tables hold the finished ones. Running the command again continues it." if missing else ""}
{f"Wall time of the grid: {grid_s / 60:.1f} min, the sum over its runs of model loading, training, evaluation and test generation, over every invocation that worked on them (`runs/{WALL_TIMES}`). Per part: {_parts_markdown(times, clocks)}." if grid_s else ""}
{f"Wall-clock time of the parts timed that way: {sum(clocks.values()):.1f} min (per part, the time covered by its runs' spans, `runs/{SPANS}`: runs made side by side, `make reproduce JOBS=2`, one thread each, count once)." if clocks else ""}
{f"Time this invocation spent on runs: {wall_time_s / 60:.1f} min (finished runs are skipped, so a rerun that only rebuilds the reports spends none)." if wall_time_s and round(wall_time_s / 60, 1) > 0 else ""}

{_estimates_markdown(times, estimates or {}, clocks)}

Versions and machine: Python {env['python']}, torch {env['torch']}, transformers {env['transformers']},
peft {env['peft']}, accelerate {env['accelerate']}; {env['platform']}, {env['cpu_count']} CPUs,
{env['torch_threads']} torch threads{', GPU ' + env['cuda'] if env['cuda'] else ', no GPU'}.

Each run's record (config.yaml, command.txt, env.json, metrics.json, ranks.json and, for style
transfer, generations.jsonl) is copied from `runs/reproduce/{profile['name']}/` into `runs/` here; the
tables and rank maps are built from those copies only (efficiency.md's inference timing also
reloads the runs' saved adapters, which stay under `runs/reproduce/`).

{rule}
{_verdicts_markdown(verdicts)}## Files
- `glue.md` / `glue.csv`: task × method, mean ± sample std over seeds (n shown), main metric at the
  best dev checkpoint among those at the final budget, the final checkpoint beside it, trainable
  parameters initial → final, train time{"; one table per rank budget (the CSV's `budget` column)" if main is not None else ""}.
  It opens with the papers' eight-task table at budget {main}, whether each task was learned, and
  SaLoRA's verdicts against LoRA and AdaLoRA; `glue.png` draws them, and `curves/<task>.png` shows
  the learning curves of a task no method learned.
{"- `selection.md` / `selection.json`: each adapter method's learning-rate choice per task and budget (see Protocol)." + chr(10) if (results / "selection.md") in written else ""}{"- `instruct.md` / `instruct.csv`: instruction tuning, the dev loss on the held-out slice (main metric `neg_loss` = -loss, so higher is better, like every other main metric), per-token loss and perplexity." + chr(10) if (results / "instruct.md") in written else ""}- `style.md` / `style.csv`: Yelp / GYAFC on the test split: BLEU, self-BLEU, style accuracy (the
  runner's own classifier; its held-out accuracy is in each run's metrics.json), perplexity, G-score,
  and sample rewrites.
- `efficiency.md`: train time per epoch, step time relative to LoRA on the same task, peak memory;
  inference time of each GLUE task's merged SaLoRA model against the base model, measured side by
  side when this file is built{f"; all of it at budget {main} (and full fine-tuning and BitFit)" if main is not None else ""}.
- `ranks/<task>/`: the learned rank per layer × module (`ranks.md`, `ranks_heatmap.png`) and the rank
  trajectory (`rank_trajectory.png`) of the first SaLoRA seed{f" at budget {main}" if main is not None else ""}; `ranks/distribution.png` compares where
  the rank went (module types, depth) across tasks, and `ranks/shares.md` gives the same shares as mean ± sd
  over every SaLoRA seed, so a difference between tasks can be set against the spread between seeds.

{files}
"""
    atomic.write_text(results / "README.md", text)
