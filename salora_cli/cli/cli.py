"""The `salora` command line (Typer). Parsing and calling only: the work lives in the modules."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from salora_cli.core.console import RunConsole
from rich.text import Text

from salora_cli.core import config as cfgmod
from salora_cli.cli.cli_options import config_flags, with_config_flags, with_dataclass_flags
from salora_cli.core.errors import Interrupted, SaloraError
from salora_cli.transfer.transfer_config import TransferConfig

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Fine-tune language models with SaLoRA and reproduce its experiments.")
train_app = typer.Typer(no_args_is_help=True, help="Train one run (a task × method × seed).")
report_app = typer.Typer(no_args_is_help=True, help="Metric tables and rank reports.")
app.add_typer(train_app, name="train")
app.add_typer(report_app, name="report")
console = RunConsole()
err_console = RunConsole(stderr=True)

PROJECT = Path(__file__).resolve().parents[2]
CONFIGS = PROJECT / "configs"
GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
STYLE_TASKS = ("yelp", "gyafc")
INSTRUCT_TASKS = ("alpaca",)
OWN_DATA_TASKS = ("file",)  # `salora train classify`: task classify/file, the files named by flags

Opt = typer.Option
Arg = typer.Argument


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("salora")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        import salora

        return salora.__version__


def _print_version(value: bool) -> None:
    if value:
        console.print(f"salora {version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(show_version: Annotated[bool, Opt("--version", callback=_print_version, is_eager=True,
                                            help="Print the version and exit")] = False) -> None:
    pass


def _resolve(family: str, task: str, config: Optional[Path], sets: list[str], overrides: dict) -> cfgmod.RunConfig:
    layers = [{"task": f"{family}/{task}"}]
    default_yaml = CONFIGS / family / f"{task}.yaml"
    if config is not None:
        layers.append(cfgmod.load_yaml(config))
    elif default_yaml.exists():
        layers.append(cfgmod.load_yaml(default_yaml))
    layers.append(_plain(overrides))
    layers += [cfgmod.parse_assignment(s) for s in sets]
    cfg = cfgmod.build_config(*layers)
    if cfg.task != f"{family}/{task}":
        raise SaloraError(f"config task '{cfg.task}' does not match the command's task {family}/{task}")
    if cfg.data_dir is None:
        cfg.data_dir = cfgmod.default_data_dir(os.environ.get("SALORA_DATA"), cfg.task)
    return cfg


def _plain(layer: dict) -> dict:
    """A config layer with paths as strings (the config's type for them)."""
    return {k: _plain(v) if isinstance(v, dict) else str(v) if isinstance(v, Path) else v for k, v in layer.items()}


def _train(family: str, task: str, known: tuple, config, sets, out, resume, overwrite, overrides) -> dict:
    _quiet_libraries()
    from salora_cli.core import run_dir as rd
    from salora_cli.transfer.style_scoring import attach_scorers
    from salora_cli.run.train import Trainer

    if task not in known:
        raise SaloraError(f"unknown {family} task '{task}' (known: {', '.join(known)})")
    cfg = _resolve(family, task, config, sets, overrides)
    run = Path(out) if out else rd.default_run_dir(cfg)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under a multi-process launch
    note = _settle_task_options(cfg)  # before the check: --resume compares the settled config
    if note and main_process:
        console.print(note, highlight=False)
    rd.check(run, cfg, resume=resume, overwrite=overwrite)
    if resume and rd.is_finished(run):
        console.print(f"{run} has already finished; nothing to resume")
        _wrote([])
        return json.loads((run / "metrics.json").read_text())
    # Data and model are loaded (and validated) before the run folder is touched, so a bad input
    # never leaves a half-made folder nor costs an --overwrite'd run.
    try:
        trainer = Trainer(cfg, run, console, resume=resume, scorers=attach_scorers)
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
    baseline = trainer.task.baseline_note(best["metrics"])
    console.print(f"[green]done[/]: {metrics['main_metric']} best {best['metrics'][metrics['main_metric']]:.2f}"
                  f" (step {best['step']}), final {metrics['final']['metrics'][metrics['main_metric']]:.2f}"
                  + (f" · {baseline}" if baseline else "") + f" · {metrics['train_time_s']:.0f} s · {run}")
    _wrote(_run_files(run))
    return metrics


def _settle_task_options(cfg: cfgmod.RunConfig) -> str | None:
    """Add to cfg.task_options what the task decides from its data (tasks.base.Task.settle_options);
    returns the task's console line about it."""
    import tasks

    added, note = tasks.get(cfg.task).configure(**cfg.task_options).settle_options(cfg.data_dir)
    cfg.task_options = {**cfg.task_options, **added}
    return note


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


_HELP_SET = ("Override any config key, repeatable; wins over the flags. For the keys without a flag of their "
             "own: " + ", ".join(k for k in cfgmod.all_keys() if k not in {f.key for f in config_flags()}
                                 and k not in ("task", "adapter.method", "task_options"))
             + ", task_options.<name>; e.g. --set task_options.train_pool=official")

# Options both `train` commands share. The config's own flags (--lr, --rank, --warmup-fraction, …)
# are generated from the config dataclasses by @with_config_flags (salora_cli/cli/cli_options.py).
Config = Annotated[Optional[Path], Opt(metavar="FILE", help="YAML config (default: configs/<family>/<task>.yaml); "
                                       "the flags below override it, and --set overrides both")]
Out = Annotated[Optional[Path], Opt(metavar="RUN_DIR", help="Run folder (default: runs/<task>_<method>_seed<seed>)")]
Sets = Annotated[list[str], Opt("--set", metavar="KEY=VALUE", help=_HELP_SET)]
Resume = Annotated[bool, Opt(help="Continue the run in --out from its last checkpoint")]
Overwrite = Annotated[bool, Opt(help="Replace an existing run folder")]
TRAIN_EPILOG = ("The defaults shown are the config dataclasses'; the YAML config (--config, else "
                "configs/<family>/<task>.yaml) sets others (e.g. model, lr, budget), and a flag left out keeps "
                "the YAML's value.")


@train_app.command("glue", epilog=TRAIN_EPILOG)
@with_config_flags(exclude=("style_scoring",), help_text={
    "model": "Hub id, local folder, or offline alias (minilm-l6)",
    "data_dir": "GLUE root in the official layout <dir>/<TASK>/{train,dev}.tsv (default: $SALORA_DATA/glue, "
                "else the Hugging Face hub)"})
def train_glue(
    task: Annotated[str, Opt(help=f"GLUE task: {', '.join(GLUE_TASKS)}")],
    config: Config = None, out: Out = None, set_: Sets = [], resume: Resume = False, overwrite: Overwrite = False,
    overrides: dict = None,
):
    """Fine-tune on a GLUE task."""
    _train("glue", task, GLUE_TASKS, config, set_, out, resume, overwrite, overrides)


@train_app.command("style", epilog=TRAIN_EPILOG)
@with_config_flags(help_text={
    "model": "Hub id, local folder, or offline alias (configs/style/*.yaml: smollm2-135m)",
    "data_dir": "Yelp release folder, or the GYAFC_Corpus folder (GYAFC is licensed: local path only)"})
def train_style(
    task: Annotated[str, Opt(help=f"Style-transfer task: {', '.join(STYLE_TASKS)}")],
    config: Config = None, out: Out = None, set_: Sets = [], resume: Resume = False, overwrite: Overwrite = False,
    num_beams: Annotated[Optional[int], Opt(help="Beam size for generation (1 = greedy) "
                                             "(task_options.num_beams)")] = None,
    direction: Annotated[Optional[str], Opt(help="GYAFC: both | informal-to-formal | formal-to-informal "
                                             "(task_options.direction)")] = None,
    overrides: dict = None,
):
    """Fine-tune a causal LM for text style transfer (Yelp sentiment, GYAFC formality).
    Task options (e.g. the Yelp training pool) take --set task_options.train_pool=official."""
    options = {k: v for k, v in (("num_beams", num_beams), ("direction", direction)) if v is not None}
    if options:
        overrides = cfgmod.merge_dicts(overrides, {"task_options": options})
    _train("style", task, STYLE_TASKS, config, set_, out, resume, overwrite, overrides)


@train_app.command("instruct", epilog=TRAIN_EPILOG)
@with_config_flags(exclude=("style_scoring",), help_text={
    "model": "Hub id, local folder, or offline alias (configs/instruct/alpaca.yaml: smollm2-135m)",
    "data_dir": "A folder holding alpaca_data.json (or instruct/alpaca_data.json); default: $SALORA_DATA/instruct, "
                "else ../shared/data/instruct beside the project"})
def train_instruct(
    task: Annotated[str, Opt(help=f"Instruction-tuning task: {', '.join(INSTRUCT_TASKS)}")] = "alpaca",
    data: Annotated[Optional[Path], Opt(metavar="FILE", help="Alpaca-format data: a JSON list or JSON Lines of "
                                                             "instruction/input/output records (sets data_dir)")] = None,
    dev_size: Annotated[Optional[int], Opt(help="Records held out (seeded by task_options.dev_seed) for the dev "
                                                "loss that picks the best checkpoint (task_options.dev_size)")] = None,
    config: Config = None, out: Out = None, set_: Sets = [], resume: Resume = False, overwrite: Overwrite = False,
    overrides: dict = None,
):
    """Instruction-tune a causal LM on Alpaca-format data (loss on the responses only; dev loss picks the
    best checkpoint). Other task options: --set task_options.dev_seed=0, task_options.hub_dataset=tatsu-lab/alpaca."""
    overrides = overrides or {}
    if data is not None:
        if "data_dir" in overrides:
            raise SaloraError("give the data with --data FILE or --data-dir DIR, not both")
        overrides = {**overrides, "data_dir": str(data)}
    if dev_size is not None:
        overrides = cfgmod.merge_dicts(overrides, {"task_options": {"dev_size": dev_size}})
    _train("instruct", task, INSTRUCT_TASKS, config, set_, out, resume, overwrite, overrides)


@train_app.command("classify", epilog=TRAIN_EPILOG)
@with_config_flags(exclude=("style_scoring", "data_dir"), help_text={
    "model": "Hub id, local folder, or offline alias (configs/classify/file.yaml: minilm-l6)"})
def train_classify(
    train_file: Annotated[Optional[Path], Opt(metavar="FILE", help="Training examples: .csv, .tsv, .json (a list "
                                              "of records) or .jsonl")] = None,
    validation_file: Annotated[Optional[Path], Opt(metavar="FILE", help="Examples evaluated during training; the "
                                                   "best checkpoint is chosen on them")] = None,
    test_file: Annotated[Optional[Path], Opt(metavar="FILE", help="Held-out examples scored once at the end with "
                                             "the best checkpoint (optional)")] = None,
    text_columns: Annotated[Optional[str], Opt(metavar="A[,B]", help="One text column, or two read as a pair "
                                               "(default: sentence1+sentence2, question+sentence, question+passage, "
                                               "sentence or text, else the first one or two text columns)")] = None,
    label_column: Annotated[Optional[str], Opt(metavar="NAME", help="Label column (default: label): text, "
                                               "integers or booleans are classes, decimal numbers a regression "
                                               "target")] = None,
    config: Config = None, out: Out = None, set_: Sets = [], resume: Resume = False, overwrite: Overwrite = False,
    overrides: dict = None,
):
    """Fine-tune a classifier (or a regressor) on your own CSV, TSV, JSON or JSON Lines files. The text columns
    and the classes in id order are recorded in the run's config.yaml; `salora predict RUN_DIR FILE` labels
    new rows. Other task options: --set task_options.problem=regression (integer scores),
    task_options.labels=[...] (the classes in your order)."""
    given = {"train_file": train_file, "validation_file": validation_file, "test_file": test_file,
             "text_columns": text_columns, "label_column": label_column}
    options = {k: cfgmod.absolute_path(v) if isinstance(v, Path) else v for k, v in given.items() if v is not None}
    if options:
        overrides = cfgmod.merge_dicts(overrides or {}, {"task_options": options})
    _train("classify", "file", OWN_DATA_TASKS, config, set_, out, resume, overwrite, overrides)


Checkpoint = Annotated[str, Opt(metavar="best|final", help="Which saved weights: best (at the best dev evaluation) "
                                                          "or final (at the last step)")]


@app.command("eval")
def eval_cmd(
    run_dir: Annotated[Path, Arg(metavar="RUN_DIR", help="A finished run folder")],
    split: Annotated[Optional[str], Opt(metavar="SPLIT", help="Split to evaluate (default: the task's dev "
                                                             "split)")] = None,
    checkpoint: Checkpoint = "best",
    data_dir: Annotated[Optional[Path], Opt(metavar="DIR", help="Where the run's data is now (default: the "
                                                               "data_dir in its config.yaml)")] = None,
):
    """Reload a run (config + saved weights) and recompute its metrics. On a transfer folder (salora
    transfer): rescore its generations.jsonl and compare with its metrics.json."""
    _quiet_libraries()
    from salora_cli.run.evaluation import evaluate_run
    from salora_cli.transfer.style_scoring import attach_scorers
    from salora_cli.transfer.transfer import is_transfer_folder, rescore_folder

    if is_transfer_folder(run_dir):
        _, written = rescore_folder(run_dir, console)
        _wrote([written])
        return

    _, written = evaluate_run(run_dir, split, checkpoint, console, data_dir=data_dir, scorers=attach_scorers)
    _wrote([written])


@app.command("predict")
def predict_cmd(
    run_dir: Annotated[Path, Arg(metavar="RUN_DIR", help="A run trained with `salora train classify`")],
    file: Annotated[Path, Arg(metavar="FILE", help="Rows to predict (.csv, .tsv, .json, .jsonl) with the run's "
                                                   "text columns; a label column may be there or not")],
    out: Annotated[Optional[Path], Opt(metavar="FILE", help="Write the predictions here, in the format of its "
                                                            "extension (default: CSV on stdout)")] = None,
    checkpoint: Checkpoint = "best",
    overwrite: Annotated[bool, Opt(help="Replace --out if it exists")] = False,
):
    """Label new rows with a trained run: every input row, in input order, with the predicted label and each
    class's probability (prob_<label>), or the predicted score for a regression."""
    _quiet_libraries()
    from salora_cli.run.predict import predict_file

    text, rows = predict_file(run_dir, file, out, checkpoint, overwrite)
    if out is None:
        sys.stdout.write(text)
        err_console.print(f"predicted {rows} rows with {run_dir} ({checkpoint} checkpoint)", highlight=False)
        return
    console.print(f"predicted {rows} rows with {run_dir} ({checkpoint} checkpoint)", highlight=False)
    _wrote([out])


@app.command("transfer")
@with_dataclass_flags(TransferConfig, "Transfer settings (recorded in the output's config.yaml)", exclude=("task",))
def transfer_cmd(
    run_or_model: Annotated[str, Arg(metavar="RUN_OR_MODEL", help="A causal-LM run folder (its adapter on its base "
                                     "model), or a model: hub id, local folder, or offline alias (smollm2-135m)")],
    task: Annotated[str, Opt(help=f"Style task: {', '.join(STYLE_TASKS)}")],
    out: Annotated[Optional[Path], Opt(metavar="DIR", help="Output folder (default: RUN/transfer/<task> for a "
                                                           "run, runs/transfer/<model>/<task> for a model)")] = None,
    overwrite: Annotated[bool, Opt(help="Replace an earlier transfer in the output folder")] = False,
    overrides: dict = None,
):
    """Zero-shot style transfer of a run or a base model (Alpaca template, fixed instructions), scored with
    BLEU, self-BLEU, style accuracy, G, fluency (perplexity under the base LM) and what a reader would see."""
    _quiet_libraries()
    from salora_cli.transfer.transfer import run_transfer

    try:
        settings = TransferConfig(task=task, **(overrides or {}))
    except TypeError as exc:  # pragma: no cover - the flags are the fields
        raise SaloraError(str(exc)) from None
    written = run_transfer(run_or_model, settings, out, overwrite, console)
    _wrote(sorted(written.iterdir()))


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, Arg(metavar="RUN_DIR", help="A finished salora or lora run folder")],
    out: Annotated[Path, Arg(metavar="OUT", help="Folder for the plain peft LoRA adapter")],
    checkpoint: Checkpoint = "best",
    overwrite: Annotated[bool, Opt(help="Replace OUT if it already holds an exported adapter")] = False,
):
    """Export a plain peft LoRA adapter (per-module ranks) that vanilla peft loads.
    OUT must be new or empty (or an earlier export, with --overwrite) and outside every run folder."""
    _quiet_libraries()
    from salora_cli.run.evaluation import export_run

    ranks = export_run(run_dir, out, checkpoint, overwrite=overwrite)
    console.print(f"exported {len(ranks)} modules (total rank {sum(ranks.values())}) → {out}", highlight=False)
    _wrote(sorted(out.iterdir()))


@report_app.command("metrics")
def report_metrics(
    paths: Annotated[Optional[list[Path]], Arg(metavar="RUN_DIR", show_default=False,
                                               help="Run folders or folders holding runs (default: runs/)")] = None,
    out: Annotated[Optional[Path], Opt(metavar="DIR", help="Also write <stem>.md and <stem>.csv into this "
                                                           "folder")] = None,
    stem: Annotated[str, Opt(metavar="NAME", help="File name stem for --out")] = "metrics",
):
    """One table of every task × method: mean ± std over seeds, parameters, time."""
    from salora_cli.reports import build_metrics_report, find_runs

    report = build_metrics_report(find_runs(paths or [Path("runs")]))
    report.print(console)
    _wrote(report.write(out, stem) if out else [], none="wrote nothing (--out DIR writes the table as "
                                                        f"{stem}.md and {stem}.csv)")


@report_app.command("ranks")
def report_ranks(run_dir: Annotated[Path, Arg(metavar="RUN_DIR", help="A run folder with ranks.json")]):
    """Rank per layer × module (learned by salora and adalora, fixed for lora), totals, heatmap and
    trajectory PNGs, written into the run folder."""
    from salora_cli.reports import build_rank_report

    report = build_rank_report(run_dir)
    report.print(console)
    _wrote(report.write(run_dir))


@app.command("demo")
def demo(
    data_dir: Annotated[Optional[Path], Opt(metavar="DIR", help="GLUE root (default: $SALORA_DATA/glue)")] = None,
    out: Annotated[Path, Opt(metavar="DIR", help="Folder for the two runs and the tables")] = Path("runs/demo"),
):
    """SaLoRA vs LoRA on an SST-2 slice with MiniLM-L6, offline, then the tables and rank report."""
    _quiet_libraries()
    from salora_cli.grid.demo import run_demo

    started = time.time()
    try:
        run_demo(CONFIGS / "demo.yaml", data_dir, out, console)
    except KeyboardInterrupt:
        raise Interrupted("the demo stopped; run it again (make demo) to continue where it stopped") from None
    _wrote(_changed_since(out, started))


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


Tasks = Annotated[Optional[str], Opt(metavar="TASK,...", help="Only these tasks, comma-separated (e.g. sst2,mrpc)")]
Seeds = Annotated[Optional[str], Opt(metavar="SEED,...", help="Only these seeds, comma-separated")]
GridOut = Annotated[Path, Opt(metavar="DIR", help="Folder for the runs (one subfolder per profile)")]


@app.command("reproduce")
def reproduce(
    profile: Annotated[str, Opt(metavar="NAME|FILE", help="Profile name in configs/reproduce/ (cpu, paper) or "
                                                          "a YAML path")] = "cpu",
    tasks: Tasks = None,
    methods: Annotated[Optional[str], Opt(metavar="METHOD,...", help="Only these methods, "
                                                                     "comma-separated")] = None,
    seeds: Seeds = None,
    out: GridOut = Path("runs/reproduce"),
    results: Annotated[Path, Opt(metavar="DIR", help="Folder for the tables, figures and README")] = Path("results"),
    report: Annotated[bool, Opt(help="Build results/ after the runs; --no-report runs only (re-timing runs one "
                                     "per process, say), and a later invocation builds it")] = True,
    plan: Annotated[bool, Opt("--plan", help="Only print every run the profile would start, with its steps, tokens, "
                                             "estimated GPU-hours and disk (no model is loaded; seconds)")] = False,
    dry_run: Annotated[bool, Opt("--dry-run", help="Run every distinct path of the profile end to end on tiny random "
                                                   "models of its architectures (a few steps each; minutes), "
                                                   "under --out/<profile>-dry-run")] = False,
):
    """Run a profile's experiment grid (resumable: finished runs are skipped), then build results/."""
    path, seed_list = _profile_path(profile), _seed_list(seeds)
    if plan and dry_run:
        raise SaloraError("--plan and --dry-run are two different checks: give one")
    if plan:
        from salora_cli.grid.plan import build_plan, print_plan

        print_plan(build_plan(path, os.environ.get("SALORA_DATA"), _split(tasks), _split(methods), seed_list), console)
        _wrote([])
        return
    _quiet_libraries()
    if dry_run:
        from salora_cli.grid.dry_run import dry_run as run_dry

        folder = run_dry(path, out, console, os.environ.get("SALORA_DATA"), _split(tasks), _split(methods))
        _wrote([folder])
        return
    from salora_cli.grid.reproduce import run_grid

    started = time.time()
    try:
        with _sigterm_as_interrupt():
            from salora_cli.grid.plan import part_estimates  # set beside the measured part times

            run_grid(path, out, results, console, os.environ.get("SALORA_DATA"), _split(tasks),
                     _split(methods), seed_list, report=report,
                     estimates=part_estimates(path, os.environ.get("SALORA_DATA")) if report else None)
    except KeyboardInterrupt:
        raise Interrupted("the grid stopped; run the same command again: finished runs are skipped and "
                          "the interrupted one resumes from its last checkpoint") from None
    _wrote(_changed_runs(out, started) + _changed_since(results, started))


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """`kill PID` stops a long grid (reproduce, ablate) the way Ctrl-C does: the run in progress records
    its wall time and the grid says how to continue (the default SIGTERM action would end the process on the spot)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("ablate")
def ablate(
    profile: Annotated[str, Opt(metavar="NAME|FILE", help="Ablation profile in configs/reproduce/ or a YAML "
                                                          "path")] = "ablations",
    tasks: Tasks = None,
    seeds: Seeds = None,
    out: GridOut = Path("runs/reproduce"),
    results: Annotated[Path, Opt(metavar="DIR", help="Folder for <profile name>.md")] = Path("results"),
    variants: Annotated[Optional[str], Opt(metavar="A,B", help="Only these variants (comma-separated)")] = None,
):
    """Run each SaLoRA design variant of an ablation profile (resumable), then write <profile name>.md."""
    _quiet_libraries()
    from salora_cli.grid.ablations import run_ablations

    path, seed_list = _profile_path(profile), _seed_list(seeds)
    started = time.time()
    try:
        with _sigterm_as_interrupt():
            written = run_ablations(path, out, results, console, os.environ.get("SALORA_DATA"),
                                    _split(tasks), seed_list, _split(variants))
    except KeyboardInterrupt:
        raise Interrupted("the ablations stopped; run the same command again: finished runs are "
                          "skipped and the interrupted one resumes") from None
    copies = written.parent / written.stem / "runs"  # what each number rests on (salora_cli/grid/ablations.py)
    _wrote(_changed_runs(out, started) + [written] + ([copies] if copies.is_dir() else []))


# ------------------------------------------------------------------ what a command wrote
def _wrote(paths: list, none: str = "wrote nothing") -> None:
    """End a command by naming what it wrote (a folder with a trailing /)."""
    names = [f"{p}/" if isinstance(p, Path) and p.is_dir() else str(p) for p in paths if p]
    # plain text: a path may hold [brackets] that markup would eat
    console.print(Text("wrote: " + ", ".join(names) if names else none), highlight=False, soft_wrap=True)


# a run folder's files, the results first; then its folders
RUN_FILES_FIRST = ("metrics.json", "ranks.json", "generations.jsonl")


def _run_files(run: Path) -> list[Path]:
    entries = sorted(run.iterdir()) if run.is_dir() else []
    files = [p for p in entries if not p.is_dir()]
    files.sort(key=lambda p: RUN_FILES_FIRST.index(p.name) if p.name in RUN_FILES_FIRST else len(RUN_FILES_FIRST))
    return files + [p for p in entries if p.is_dir()]


MTIME_SLACK_S = 1.0  # file times come from a coarser clock than time.time() (and some file systems)


def _changed_since(folder: Path, started: float) -> list[Path]:
    """The entries of `folder` created or changed since `started` (a folder counts when an entry
    was added, replaced or removed in it)."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if p.stat().st_mtime >= started - MTIME_SLACK_S]


def _changed_runs(out: Path, started: float) -> list:
    """The run folders (<out>/<profile>/<run>) changed since `started`, counted per profile folder."""
    summary = []
    for profile in sorted(out.iterdir()) if out.is_dir() else []:
        if profile.is_dir():
            runs = [r for r in _changed_since(profile, started) if r.is_dir()]
            if runs:
                summary.append(f"{profile}/ ({len(runs)} run folder{'s' if len(runs) > 1 else ''})")
    return summary


def _quiet_libraries() -> None:
    # transformers' load reports and download bars drown the run's own output; called by the
    # commands that load models, never before parsing (`--help` must not import transformers)
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
