"""`salora reproduce --profile NAME --dry-run`: every distinct path of a profile, end to end, on tiny stand-ins.

A profile's runs differ in far fewer ways than there are runs: the task's loader, the model's
architecture, the method, the rank budget, and (instruction tuning) the zero-shot transfer. The dry
run picks the fewest runs that together cover every task, every (architecture, method) pair, every
(method, budget) pair and every transfer task (`distinct_paths`), and runs each through the grid's own
code (reproduce.run_phase, reproduce.run_transfers) on a tiny random stand-in of its model
(salora_cli/grid/stand_ins.py) and a small copy of its data, with the entry's settings otherwise: method,
budget, r_init, orthogonality weight, mixed precision where the machine has it (bf16 autocasts on a
CPU; fp16 needs a GPU), max length capped. What it changes is in DRY (a few steps with the rank
schedule squeezed into them, so components are removed) and `dry_layer`.

Then each run is checked the way a user would use it: `salora eval` of its folder recomputes the
recorded metric; the folder alone determines the model (reloaded twice under different seeds, the
outputs are the same: a weight the checkpoint did not provide and the run did not save would differ);
`salora export` writes a plain peft adapter that vanilla peft loads to the same outputs; a transfer
folder is rescored. The report (dry_run.md) lists each path, what it covers, and what was checked.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from salora_cli.core import atomic
from salora_cli.core import config as cfgmod
from salora_cli.grid import protocol
from salora_cli.core.errors import SaloraError
from salora_cli.core.method_registry import REGISTRY
from salora_cli.grid.model_specs import spec as model_spec
from salora_cli.grid.protocol import PlannedRun

ROOT = Path(__file__).resolve().parents[2]
DRY_STEPS = 8
DRY = {
    "train": {"max_steps": DRY_STEPS, "eval_every": DRY_STEPS // 2, "checkpoint_every": DRY_STEPS // 2,
              "eval_batch_size": 8, "max_eval_samples": 8, "log_every": 1},
    # the rank schedule inside the few steps: the target falls to the budget by step 4, a removal may
    # follow every step, the structure freezes at step 6 (AdaLoRA allocates over the same steps)
    "adapter": {"prune_every": 1, "ramp_start": 0.0, "ramp_end": 0.5, "freeze_at": 0.75},
    "style_scoring": False,  # the evaluation classifier is a MiniLM run of its own (the cpu grid trains one)
}
DRY_BATCH, DRY_MAX_LENGTH, DRY_NEW_TOKENS = 4, 96, 8
DRY_TRANSFER = {"max_samples": 4, "max_new_tokens": DRY_NEW_TOKENS, "batch_size": 4, "style_scoring": False}


@dataclass
class PathResult:
    """What one path did and what its checks found."""

    run: str = field(metadata={"help": "The run folder (named as the real run would be)"})
    covers: list[str] = field(metadata={"help": "The features it is the chosen run for"})
    precision: str = ""
    seconds: float = 0.0
    checks: dict[str, str] = field(default_factory=dict, metadata={"help": "check -> what it found"})
    error: str | None = None


# --------------------------------------------------------------------------------------- the paths
def features(p: PlannedRun) -> set[tuple]:
    """What a run exercises that another may not: its task, its (architecture, method), its (method,
    budget), its transfer tasks."""
    spec = model_spec(p.model)
    arch = spec.model_type if spec else p.model
    out = {("task", p.task), ("architecture/method", arch, p.method)}
    if p.budget is not None:
        out.add(("method/budget", p.method, p.budget))
    out |= {("transfer", t) for t in p.transfer}
    return out


def distinct_paths(planned: list[PlannedRun]) -> list[tuple[PlannedRun, list[str]]]:
    """The fewest runs (greedily) that cover every feature of the planned runs; each with what it is
    chosen for. Only first-phase runs are candidates (a later seed adds no path)."""
    candidates = protocol.phase_one(planned)
    wanted = set().union(*(features(p) for p in candidates))
    chosen = []
    while wanted:
        best = max(candidates, key=lambda p: len(features(p) & wanted))  # ties: the first in plan order
        new = features(best) & wanted
        chosen.append((best, sorted("/".join(map(str, f[1:])) for f in new)))
        wanted -= new
    return chosen


def machine_precision(requested: str) -> str:
    """The entry's mixed precision where this machine has it: bf16 on a GPU that supports it or as the
    CPU's autocast; fp16 on a GPU only."""
    import torch

    if requested == "no":
        return "no"
    if torch.cuda.is_available():
        return requested if requested == "fp16" or torch.cuda.is_bf16_supported() else "no"
    return "bf16" if requested == "bf16" else "no"


def dry_layer(cfg: cfgmod.RunConfig, model_folder: Path) -> dict:
    """The config layer a dry path adds over its entry's: the stand-in, a few steps of a few examples."""
    t = cfg.train
    batch = min(t.batch_size, DRY_BATCH)
    layer = cfgmod.merge_dicts(DRY, {"model": str(model_folder), "train": {
        "batch_size": batch, "max_train_samples": DRY_STEPS * batch * t.grad_accum,
        "max_length": min(t.max_length, DRY_MAX_LENGTH), "mixed_precision": machine_precision(t.mixed_precision)}})
    if cfg.task.startswith("style/"):
        layer["task_options"] = {"max_new_tokens": DRY_NEW_TOKENS}
    return layer


# ------------------------------------------------------------------------------------------- running
@contextlib.contextmanager
def dry_conditions(path: Path):
    """While the dry run runs: $SALORA_DATA points at the stand-in data (transfers and default data
    folders read it), and torch uses one thread (tiny models run faster on one; threads only add their
    synchronisation). Both restored after."""
    import torch

    before, threads = os.environ.get("SALORA_DATA"), torch.get_num_threads()
    os.environ["SALORA_DATA"] = str(path)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if before is None:
            os.environ.pop("SALORA_DATA", None)
        else:
            os.environ["SALORA_DATA"] = before


def dry_run(profile_path: Path, out: Path, console: Console, data: str | None = None,
            tasks: list[str] | None = None, methods: list[str] | None = None) -> Path:
    """Run the dry run of a profile under out/<profile>-dry-run (replaced each time); returns that
    folder. Raises SaloraError naming the paths that failed, after running all of them."""
    from salora_cli.grid.reproduce import load_profile, plan
    from salora_cli.grid.stand_ins import stand_in_data, stand_in_model
    from tasks.instruct.instruct_data import PROJECT_DATA

    profile = load_profile(profile_path)
    planned = plan(profile, ROOT, tasks, methods)
    folder = out / f"{profile['name']}-dry-run"
    shutil.rmtree(folder, ignore_errors=True)
    shared = Path(data).expanduser() if data else PROJECT_DATA
    sources = stand_in_data(shared, folder / "data", ROOT / "tests" / "fixtures")
    paths = distinct_paths(planned)
    runs = len(protocol.phase_one(planned)) + protocol.phase_two_count(planned)  # as --plan counts them
    console.rule(f"dry run of profile {profile['name']}: {len(paths)} distinct paths of its {runs} runs")
    results, dry = [], []
    with dry_conditions(folder / "data"):
        for p, covers in paths:
            spec = model_spec(p.model)
            result = PathResult(p.folder_name, covers)
            results.append(result)
            if spec is None:
                result.error = f"{p.model} has no stated shapes (salora_cli/grid/model_specs.py): no stand-in"
                continue
            stand_in = stand_in_model(spec, folder / "models")
            cfg = cfgmod.build_config(*p.layers)
            layer = dry_layer(cfg, stand_in.folder)
            result.precision = layer["train"]["mixed_precision"]
            run = dataclasses.replace(p, model=str(stand_in.folder), layers=[*p.layers, layer])
            _run_path(run, result, folder, console)
            if result.error is None:
                dry.append(run)
        transfers = _run_transfers(dry, profile, folder, console)
    models = sorted({p.model for p, _ in paths})
    report = _write_report(folder, profile["name"], results, transfers, sources, runs, models)
    _print_summary(results, transfers, console)
    failed = [r.run for r in results if r.error] + [t for t, outcome in transfers.items() if outcome.startswith("failed")]
    if failed:
        raise SaloraError(f"dry run of {profile['name']}: {len(failed)} path(s) failed: {', '.join(failed)} "
                          f"(details in {report})")
    return folder


def _run_path(run: PlannedRun, result: PathResult, folder: Path, console: Console) -> None:
    """Train the path through the grid's own code, then check its folder; a failure is recorded, not raised."""
    from salora_cli.grid.reproduce import run_phase

    started = time.perf_counter()
    runs_root = folder / "runs"
    try:
        run_phase([run], 1, 1, runs_root, str(folder / "data"), console)
        result.checks = check_run(runs_root / run.folder_name, folder / "exports" / run.folder_name, console)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding of the dry run, reported with its path
        result.error = _failure(exc)
    result.seconds = round(time.perf_counter() - started, 1)


def _failure(exc: Exception) -> str:
    """An exception as one line of the report: its type and its message's first line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _run_transfers(dry: list[PlannedRun], profile: dict, folder: Path, console: Console) -> dict[str, str]:
    """The zero-shot transfers of the dry runs that have them, through reproduce.run_transfers with the
    profile's transfer options (a few sentences, short answers); each transfer folder then rescored."""
    from salora_cli.grid.reproduce import run_transfers
    from salora_cli.transfer.transfer import is_transfer_folder, rescore_folder

    transferring = [p for p in dry if p.transfer]
    if not transferring:
        return {}
    runs_root = folder / "runs"
    outcome: dict[str, str] = {}
    options = {**(profile.get("transfer_options") or {}), **DRY_TRANSFER}
    try:
        run_transfers(transferring, runs_root, options, console)
    except Exception as exc:  # noqa: BLE001 - reported with the transfers
        return {"transfers": f"failed: {_failure(exc)}"}
    for found in sorted(runs_root.rglob("metrics.json")):  # the runs' RUN/transfer/<task>, and transfer/<model>/<task>
        transfer = found.parent
        if not is_transfer_folder(transfer):
            continue
        name = str(transfer.relative_to(runs_root))
        try:
            metrics, _ = rescore_folder(transfer, console)
            sources = json.loads(found.read_text())["test"]["examples"]
            outcome[name] = f"{sources} sources rewritten, rescored by salora eval ({len(metrics)} metrics)"
        except Exception as exc:  # noqa: BLE001
            outcome[name] = f"failed: {_failure(exc)}"
    return outcome


# -------------------------------------------------------------------------------------------- checks
def check_run(run: Path, export_to: Path, console: Console) -> dict[str, str]:
    """The checks of one finished run folder; each returns what it found or raises SaloraError."""
    cfg = cfgmod.build_config(cfgmod.load_yaml(run / "config.yaml"))
    checks = {"steps": _check_steps(run, cfg), "removal": _check_removal(run, cfg),
              "salora eval": _check_eval(run, console), "reload": _check_reload(run)}
    if REGISTRY[cfg.method].peft_export:
        checks["export"] = _check_export(run, export_to)
    return checks


def _check_steps(run: Path, cfg) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    if metrics.get("status") != "finished" or metrics["steps"] != cfg.train.max_steps:
        raise SaloraError(f"{run.name}: not finished at {cfg.train.max_steps} steps")
    return f"{metrics['steps']} steps, {len(metrics['evals'])} evaluations"


def _check_removal(run: Path, cfg) -> str:
    """A method that learns its rank removed components during the run (ranks.json's trajectory)."""
    if not (run / "ranks.json").is_file():
        return "no rank (not a low-rank method)"
    ranks = json.loads((run / "ranks.json").read_text())
    totals = [point["total_rank"] for point in ranks["trajectory"]]
    final = sum(m["rank"] for m in ranks["modules"])
    if not REGISTRY[cfg.method].learns_rank:
        return f"fixed rank, total {final}"
    drops = [point["step"] for before, point in zip(ranks["trajectory"], ranks["trajectory"][1:])
             if point["total_rank"] < before["total_rank"]]
    if final >= totals[0]:
        raise SaloraError(f"{run.name}: no component removed (total rank {totals[0]} → {final})")
    return f"total rank {totals[0]} → {final} (fell at step{'s' if len(drops) > 1 else ''} {', '.join(map(str, drops))})"


def _check_eval(run: Path, console: Console) -> str:
    """`salora eval RUN`: the recorded main metric recomputed from the folder."""
    from salora_cli.run.evaluation import evaluate_run

    metrics = json.loads((run / "metrics.json").read_text())
    main = metrics["main_metric"]
    recorded = metrics["best"]["metrics"][main]
    now, _ = evaluate_run(run, None, "best", console)
    if abs(now[main] - recorded) > 1e-6 * max(1.0, abs(recorded)):
        raise SaloraError(f"{run.name}: salora eval gives {main} {now[main]:.4f}, the run recorded {recorded:.4f}")
    return f"{main} {recorded:.2f} recomputed"


def _outputs(run: Path, checkpoint_model=None, seed: int = 0):
    """Logits of the run's best weights reloaded from its folder (or of `checkpoint_model`) on a few of
    its training examples (every task can batch those for a forward pass), under `seed` (a weight the
    folder does not hold would come out random)."""
    import torch

    from salora_cli.run.evaluation import eval_examples, reload_run

    torch.manual_seed(seed)
    cfg, task, method, tokenizer = reload_run(run, "best")
    examples = task.fit_to_length(tokenizer, eval_examples(cfg, task, "train"), cfg.train.max_length, "train")[:4]
    batch = task.collate(tokenizer, examples, cfg.train.max_length)
    batch.pop("labels", None)
    model = (checkpoint_model(cfg, task) if checkpoint_model else method.model).eval()
    with torch.no_grad():
        return model(**batch).logits.float()


def _check_reload(run: Path) -> str:
    import torch

    first, second = _outputs(run, seed=1), _outputs(run, seed=2)
    if not torch.equal(first, second):
        raise SaloraError(f"{run.name}: reloading the folder twice gives different outputs: a weight the run "
                          "trained or initialised is not in its saved checkpoint")
    return "the folder alone gives the same outputs (reloaded under two seeds)"


def _check_export(run: Path, export_to: Path) -> str:
    """`salora export RUN OUT`, then vanilla peft loads OUT onto the base model: the same outputs."""
    import torch
    from peft import PeftModel

    from salora_cli.run.evaluation import export_run

    ranks = export_run(run, export_to, "best")
    ours = _outputs(run, seed=1)
    theirs = _outputs(run, lambda cfg, task: PeftModel.from_pretrained(task.build_model(cfg.model)[0],
                                                                       str(export_to)), seed=2)
    if not torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4):
        raise SaloraError(f"{run.name}: the exported adapter under vanilla peft gives other outputs "
                          f"(max difference {float((ours - theirs).abs().max()):.3g})")
    return f"peft loads it: {len(ranks)} modules, total rank {sum(ranks.values())}, same outputs"


# ------------------------------------------------------------------------------------------- report
def _write_report(folder: Path, profile: str, results: list[PathResult], transfers: dict[str, str],
                  sources: dict[str, str], runs: int, models: list[str]) -> Path:
    from salora_cli.grid.plan import not_covered_by_dry_run

    lines = [f"# Dry run of profile {profile}", "",
             f"{len(results)} distinct paths of its {runs} runs, each {DRY_STEPS} optimizer steps on a tiny "
             "random stand-in of its model (salora_cli/grid/stand_ins.py) and a small copy of its data; "
             "written by `salora reproduce --profile " + profile + " --dry-run`.", "",
             "| run | covers | precision | s | " + " | ".join(CHECK_NAMES) + " | outcome |",
             "|" + "---|" * (5 + len(CHECK_NAMES))]
    for r in results:
        cells = [r.run, ", ".join(r.covers), r.precision, f"{r.seconds:.1f}"]
        cells += [r.checks.get(name, "—") for name in CHECK_NAMES]
        cells.append(f"**failed**: {r.error}" if r.error else "ok")
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    if transfers:
        lines += ["", "## Zero-shot transfers", ""] + [f"- `{name}`: {outcome}" for name, outcome in transfers.items()]
    lines += ["", "## Data (copied under data/)", ""] + [f"- `{k}` from {v}" for k, v in sources.items()]
    lines += ["", "## Not covered", ""] + [f"- {line}" for line in not_covered_by_dry_run(
        [m for m in models if model_spec(m)])]
    lines += ["- the style evaluation classifier (a MiniLM run trained once; style_scoring is off here)",
              "- several processes (accelerate launch), and full-size data and schedules"]
    report = folder / "dry_run.md"
    atomic.write_text(report, "\n".join(lines) + "\n")
    return report


CHECK_NAMES = ("steps", "removal", "salora eval", "reload", "export")


def _print_summary(results: list[PathResult], transfers: dict[str, str], console: Console) -> None:
    from salora_cli.core.console import print_columns

    rows = [(r.run, ", ".join(r.covers), f"{r.seconds:.1f}", f"failed: {r.error}" if r.error else "ok") for r in results]
    rows += [(name, "zero-shot transfer", "", outcome if outcome.startswith("failed") else "ok")
             for name, outcome in transfers.items()]
    print_columns(console, "dry run", ("run", "covers", "s", "outcome"), rows, left=2)
