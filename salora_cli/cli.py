"""The `salora` command line (Typer). Parsing and calling only: the work lives in the modules."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from salora_cli import config as cfgmod
from salora_cli.errors import Interrupted, SaloraError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Fine-tune language models with SaLoRA and reproduce its experiments.")
train_app = typer.Typer(no_args_is_help=True, help="Train one run (a task × method × seed).")
report_app = typer.Typer(no_args_is_help=True, help="Metric tables and learned-rank reports.")
app.add_typer(train_app, name="train")
app.add_typer(report_app, name="report")
console = Console()
err_console = Console(stderr=True)

PROJECT = Path(__file__).resolve().parents[1]
CONFIGS = PROJECT / "configs"
GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
STYLE_TASKS = ("yelp", "gyafc")

# Named flags that override config keys (every other key: --set section.key=value).
FLAG_KEYS = {
    "method": "method", "model": "model", "data_dir": "data_dir", "seed": "train.seed",
    "rank": "adapter.r_init", "budget": "adapter.budget", "alpha": "adapter.alpha",
    "lr": "train.lr", "epochs": "train.epochs", "max_steps": "train.max_steps",
    "batch_size": "train.batch_size", "max_length": "train.max_length",
    "eval_every": "train.eval_every", "max_train_samples": "train.max_train_samples",
    "max_eval_samples": "train.max_eval_samples",
    "num_beams": "task_options.num_beams", "direction": "task_options.direction",
}

Opt = typer.Option


def _overrides(flags: dict) -> dict:
    out: dict = {}
    for name, value in flags.items():
        if value is None:
            continue
        node = out
        *parents, leaf = FLAG_KEYS[name].split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = str(value) if isinstance(value, Path) else value
    return out


def _resolve(family: str, task: str, config: Optional[Path], sets: list[str], flags: dict) -> cfgmod.RunConfig:
    layers = [{"task": f"{family}/{task}"}]
    default_yaml = CONFIGS / family / f"{task}.yaml"
    if config is not None:
        layers.append(cfgmod.load_yaml(config))
    elif default_yaml.exists():
        layers.append(cfgmod.load_yaml(default_yaml))
    layers.append(_overrides(flags))
    layers += [cfgmod.parse_assignment(s) for s in sets]
    cfg = cfgmod.build_config(*layers)
    if cfg.task != f"{family}/{task}":
        raise SaloraError(f"config task '{cfg.task}' does not match the command's task {family}/{task}")
    if cfg.data_dir is None:
        cfg.data_dir = cfgmod.default_data_dir(os.environ.get("SALORA_DATA"), cfg.task)
    return cfg


def _train(family: str, task: str, known: tuple, config, sets, out, resume, overwrite, flags) -> dict:
    from salora_cli import run_dir as rd
    from salora_cli.train import Trainer

    if task not in known:
        raise SaloraError(f"unknown {family} task '{task}' (known: {', '.join(known)})")
    cfg = _resolve(family, task, config, sets, flags)
    run = Path(out) if out else rd.default_run_dir(cfg)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under a multi-process launch
    rd.check(run, cfg, resume=resume, overwrite=overwrite)
    if resume and rd.is_finished(run):
        console.print(f"{run} has already finished; nothing to resume")
        return json.loads((run / "metrics.json").read_text())
    # Data and model are loaded (and validated) before the run folder is touched, so a bad input
    # never leaves a half-made folder nor costs an --overwrite'd run.
    try:
        trainer = Trainer(cfg, run, console, resume=resume)
    except KeyboardInterrupt:  # nothing written yet: the same command starts it again
        raise Interrupted(f"before training started; nothing was written to {run}: "
                          "run the same command again") from None
    if main_process:
        rd.prepare(run, cfg, resume=resume, overwrite=overwrite)
    else:
        console.quiet = True
    console.print(f"[bold]salora[/] {cfg.task} · {cfg.method} · {cfg.model} · seed {cfg.train.seed} → {run}")
    try:
        metrics = trainer.run()
    except KeyboardInterrupt:
        raise Interrupted(f"run {run} stopped before it finished; continue it from its last checkpoint with: "
                          f"{resume_command(sys.argv, run)}") from None
    best = metrics["best"] or metrics["final"]
    console.print(f"[green]done[/]: {metrics['main_metric']} best {best['metrics'][metrics['main_metric']]:.2f}"
                  f" (step {best['step']}), final {metrics['final']['metrics'][metrics['main_metric']]:.2f}"
                  f" · {metrics['train_time_s']:.0f} s · {run}")
    return metrics


def resume_command(argv: list[str], run: Path) -> str:
    """The command line that continues an interrupted run: the original one plus --resume (and the
    run folder named explicitly), without --overwrite, which would start it over."""
    prog = [sys.executable, "-m", "salora_cli"] if Path(argv[0]).name == "__main__.py" else [argv[0]]
    args = [a for a in argv[1:] if a not in ("--overwrite", "--no-overwrite", "--no-resume")]
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args += ["--out", str(run)]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(prog + args)


_HELP_SET = "Override any config key, e.g. --set adapter.orth_reg=0.05 (repeatable). Keys: " + \
    ", ".join(k for k in cfgmod.all_keys() if k != "adapter.method")


# Options both `train` commands share, declared once (Typer reads each command's signature).
Method = Annotated[Optional[str], Opt(help="salora | lora | adalora | full | bitfit")]
Seed = Annotated[Optional[int], Opt(help="Random seed")]
Out = Annotated[Optional[Path], Opt(help="Run folder (default: runs/<task>_<method>_seed<seed>)")]
Rank = Annotated[Optional[int], Opt(help="Initial rank per adapted matrix (r_init; LoRA's fixed rank)")]
Budget = Annotated[Optional[float], Opt(help="SaLoRA/AdaLoRA target average rank per matrix")]
Alpha = Annotated[Optional[float], Opt(help="Adapter scale numerator (ΔW scaled by alpha / r_init)")]
Lr = Annotated[Optional[float], Opt(help="Learning rate (adapters and head)")]
Epochs = Annotated[Optional[float], Opt(help="Training epochs")]
MaxSteps = Annotated[Optional[int], Opt(help="Optimizer steps (overrides epochs)")]
BatchSize = Annotated[Optional[int], Opt(help="Training batch size (per process)")]
MaxLength = Annotated[Optional[int], Opt(help="Maximum tokens per example")]
EvalEvery = Annotated[Optional[int], Opt(help="Evaluate every N steps (default: every epoch)")]
MaxTrain = Annotated[Optional[int], Opt(help="Train on a seeded random subset of this size")]
MaxEval = Annotated[Optional[int], Opt(help="Evaluate on a seeded random subset of this size")]
Sets = Annotated[list[str], Opt("--set", help=_HELP_SET)]
Resume = Annotated[bool, Opt(help="Continue the run in --out from its last checkpoint")]
Overwrite = Annotated[bool, Opt(help="Replace an existing run folder")]


@train_app.command("glue")
def train_glue(
    task: str = Opt(..., help=f"GLUE task: {', '.join(GLUE_TASKS)}"),
    config: Optional[Path] = Opt(None, help="YAML config (default: configs/glue/<task>.yaml)"),
    method: Method = None,
    model: Optional[str] = Opt(None, help="Hub id, local folder, or offline alias (minilm-l6)"),
    data_dir: Optional[Path] = Opt(None, help="GLUE root in the official layout <dir>/<TASK>/{train,dev}.tsv "
                                   "(default: $SALORA_DATA/glue, else the Hugging Face hub)"),
    seed: Seed = None, out: Out = None, rank: Rank = None, budget: Budget = None, alpha: Alpha = None,
    lr: Lr = None, epochs: Epochs = None, max_steps: MaxSteps = None, batch_size: BatchSize = None,
    max_length: MaxLength = None, eval_every: EvalEvery = None, max_train_samples: MaxTrain = None,
    max_eval_samples: MaxEval = None, set_: Sets = [], resume: Resume = False, overwrite: Overwrite = False,
):
    """Fine-tune on a GLUE task."""
    flags = {k: v for k, v in locals().items() if k in FLAG_KEYS}
    _train("glue", task, GLUE_TASKS, config, set_, out, resume, overwrite, flags)


@train_app.command("style")
def train_style(
    task: str = Opt(..., help=f"Style-transfer task: {', '.join(STYLE_TASKS)}"),
    config: Optional[Path] = Opt(None, help="YAML config (default: configs/style/<task>.yaml)"),
    method: Method = None,
    model: Optional[str] = Opt(None, help="Hub id, local folder, or offline alias (smollm2-135m)"),
    data_dir: Optional[Path] = Opt(None, help="Yelp release folder, or the GYAFC_Corpus folder (GYAFC is "
                                   "licensed: local path only)"),
    num_beams: Optional[int] = Opt(None, help="Beam size for generation (1 = greedy)"),
    direction: Optional[str] = Opt(None, help="GYAFC: both | informal-to-formal | formal-to-informal"),
    seed: Seed = None, out: Out = None, rank: Rank = None, budget: Budget = None, alpha: Alpha = None,
    lr: Lr = None, epochs: Epochs = None, max_steps: MaxSteps = None, batch_size: BatchSize = None,
    max_length: MaxLength = None, eval_every: EvalEvery = None, max_train_samples: MaxTrain = None,
    max_eval_samples: MaxEval = None, set_: Sets = [], resume: Resume = False, overwrite: Overwrite = False,
):
    """Fine-tune a causal LM for text style transfer (Yelp sentiment, GYAFC formality).
    Task options (e.g. the Yelp training pool) take --set task_options.train_pool=official."""
    flags = {k: v for k, v in locals().items() if k in FLAG_KEYS}
    _train("style", task, STYLE_TASKS, config, set_, out, resume, overwrite, flags)


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A finished run folder"),
    split: Optional[str] = Opt(None, help="Split to evaluate (default: the task's dev split)"),
    checkpoint: str = Opt("best", help="best | final"),
    data_dir: Optional[Path] = Opt(None, help="Where the run's data is now (default: the data_dir in its "
                                   "config.yaml)"),
):
    """Reload a run (config + saved weights) and recompute its metrics."""
    from salora_cli.evaluation import evaluate_run

    evaluate_run(run_dir, split, checkpoint, console, data_dir=data_dir)


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A finished salora or lora run folder"),
    out: Path = typer.Argument(..., help="Folder for the plain peft LoRA adapter"),
    checkpoint: str = Opt("best", help="best | final"),
    overwrite: bool = Opt(False, help="Replace OUT if it already holds an exported adapter"),
):
    """Export a plain peft LoRA adapter (per-module learned ranks) that vanilla peft loads.
    OUT must be new or empty (or an earlier export, with --overwrite) and outside every run folder."""
    from salora_cli.evaluation import export_run

    ranks = export_run(run_dir, out, checkpoint, overwrite=overwrite)
    console.print(f"exported {len(ranks)} modules (total rank {sum(ranks.values())}) → {out}")


@report_app.command("metrics")
def report_metrics(
    paths: list[Path] = typer.Argument(None, help="Run folders or folders holding runs (default: runs/)"),
    out: Optional[Path] = Opt(None, help="Also write <stem>.md and <stem>.csv into this folder"),
    stem: str = Opt("metrics", help="File name stem for --out"),
):
    """One table of every task × method: mean ± std over seeds, parameters, time."""
    from salora_cli.reports import build_metrics_report, find_runs

    report = build_metrics_report(find_runs(paths or [Path("runs")]))
    report.print(console)
    if out:
        report.write(out, stem)


@report_app.command("ranks")
def report_ranks(run_dir: Path = typer.Argument(..., help="A run folder with ranks.json")):
    """Learned rank per layer × module, totals vs budget, heatmap and trajectory PNGs."""
    from salora_cli.reports import build_rank_report

    report = build_rank_report(run_dir)
    report.print(console)
    written = report.write(run_dir)
    console.print("wrote " + ", ".join(str(p) for p in written))


@app.command("demo")
def demo(
    data_dir: Optional[Path] = Opt(None, help="GLUE root (default: $SALORA_DATA/glue)"),
    out: Path = Opt(Path("runs/demo"), help="Folder for the two runs"),
):
    """SaLoRA vs LoRA on an SST-2 slice with MiniLM-L6, offline, then the tables and rank report."""
    from salora_cli.demo import run_demo

    try:
        run_demo(CONFIGS / "demo.yaml", data_dir, out, console)
    except KeyboardInterrupt:
        raise Interrupted("the demo stopped; run it again (make demo) to continue where it stopped") from None


def _profile_path(profile: str) -> Path:
    """A profile name in configs/reproduce/ or a YAML path."""
    path = Path(profile) if profile.endswith((".yaml", ".yml")) else CONFIGS / "reproduce" / f"{profile}.yaml"
    if not path.exists():
        raise SaloraError(f"no profile '{profile}' ({path} missing)")
    return path


def _split(text: Optional[str]) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _seed_list(seeds: Optional[str]) -> list[int] | None:
    try:
        return [int(x) for x in _split(seeds)] if seeds else None
    except ValueError as exc:
        raise SaloraError(f"--seeds takes integers, got '{seeds}'") from exc


@app.command("reproduce")
def reproduce(
    profile: str = Opt("cpu", help="Profile name in configs/reproduce/ (cpu, paper) or a YAML path"),
    tasks: Optional[str] = Opt(None, help="Only these tasks, comma-separated (e.g. sst2,mrpc)"),
    methods: Optional[str] = Opt(None, help="Only these methods, comma-separated"),
    seeds: Optional[str] = Opt(None, help="Only these seeds, comma-separated"),
    out: Path = Opt(Path("runs/reproduce"), help="Folder for the runs (one subfolder per profile)"),
    results: Path = Opt(Path("results"), help="Folder for the tables, figures and README"),
):
    """Run a profile's experiment grid (resumable: finished runs are skipped), then build results/."""
    from salora_cli.reproduce import run_grid

    path, seed_list = _profile_path(profile), _seed_list(seeds)
    try:
        run_grid(path, out, results, console, os.environ.get("SALORA_DATA"), _split(tasks), _split(methods),
                 seed_list)
    except KeyboardInterrupt:
        raise Interrupted("the grid stopped; run the same command again: finished runs are skipped and "
                          "the interrupted one resumes from its last checkpoint") from None


@app.command("ablate")
def ablate(
    profile: str = Opt("ablations", help="Ablation profile in configs/reproduce/ or a YAML path"),
    tasks: Optional[str] = Opt(None, help="Only these tasks, comma-separated (e.g. sst2)"),
    seeds: Optional[str] = Opt(None, help="Only these seeds, comma-separated"),
    out: Path = Opt(Path("runs/reproduce"), help="Folder for the runs (one subfolder per profile)"),
    results: Path = Opt(Path("results"), help="Folder for ablations.md"),
):
    """Run each SaLoRA design variant of an ablation profile (resumable), then write ablations.md."""
    from salora_cli.ablations import run_ablations

    path, seed_list = _profile_path(profile), _seed_list(seeds)
    try:
        written = run_ablations(path, out, results, console, os.environ.get("SALORA_DATA"),
                                _split(tasks), seed_list)
    except KeyboardInterrupt:
        raise Interrupted("the ablations stopped; run the same command again: finished runs are "
                          "skipped and the interrupted one resumes") from None
    console.print(f"wrote {written}")


def _quiet_libraries() -> None:
    # transformers' load reports and download bars drown the run's own output
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(2)


def main() -> None:
    # Typer ships its own copy of click; its usage errors become one `error:` line like ours.
    from typer._click import exceptions as click_errors

    _quiet_libraries()
    try:
        code = app(standalone_mode=False)
    except Interrupted as exc:
        _interrupted(str(exc))
    except SaloraError as exc:
        _fail(str(exc))
    except click_errors.NoArgsIsHelpError as exc:  # `salora` alone: show help, as intended
        exc.show()
        sys.exit(0)
    except click_errors.ClickException as exc:  # bad flag, wrong type, missing option
        _fail(exc.format_message())
    except typer.Abort:
        _fail("aborted")
    except KeyboardInterrupt:
        _interrupted("")
    # Typer turns Ctrl-C inside a command into the return value 130, and typer.Exit(n) into n
    if code == 130:
        _interrupted("")
    if isinstance(code, int) and code != 0:
        sys.exit(code)


def _interrupted(message: str) -> None:
    # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
    from rich.text import Text

    # plain Text: a path or a --set value in the message may hold [brackets] that markup would eat
    err_console.print(Text.assemble(("interrupted:", "bold red"), f" {message or 'stopped by Ctrl-C'}"),
                      highlight=False, soft_wrap=True)
    sys.exit(130)


if __name__ == "__main__":
    main()
