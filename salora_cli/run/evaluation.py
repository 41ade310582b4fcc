"""Reload a run from its folder alone (config + saved weights): re-evaluate or export it."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import tasks
from salora_cli.core import atomic, run_dir as rd
from salora_cli.core.errors import SaloraError
from salora_cli.core.method_registry import REGISTRY
from salora_cli.methods import load_method
from tasks.models import resolve_model
from tasks.base import degenerate_flag, subset

CHECKPOINTS = {"best": "best", "final": "adapter"}


def _folder(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint not in CHECKPOINTS:
        raise SaloraError(f"checkpoint must be 'best' or 'final', got '{checkpoint}'")
    folder = run_dir / CHECKPOINTS[checkpoint]
    if not folder.exists():
        raise SaloraError(f"{run_dir} has no {checkpoint} checkpoint ({folder.name}/ missing)")
    return folder


def reload_run(run_dir: Path, checkpoint: str = "best"):
    """(config, task, method, tokenizer) rebuilt from a run folder."""
    cfg = rd.load_config(run_dir)
    folder = _folder(run_dir, checkpoint)  # before the (slow) model load
    task = _task(cfg)
    return (cfg, task, *_load(cfg, task, folder))


def _task(cfg):
    return tasks.get(cfg.task).configure(**cfg.task_options)


def _load(cfg, task, folder: Path):
    """(method, tokenizer): the base model with the run's saved weights from `folder`."""
    model, tokenizer = task.build_model(cfg.model)
    return load_method(model, cfg, folder), tokenizer


def _check_data_dir(cfg, run_dir: Path) -> None:
    # A run may be evaluated on another machine or after the data moved: say so before any loading.
    if cfg.data_dir and not Path(cfg.data_dir).exists():
        raise SaloraError(f"data folder {cfg.data_dir} (from {run_dir / 'config.yaml'}) does not exist: "
                          "pass --data-dir to say where the run's data is now")


def evaluate_run(run_dir: Path, split: str | None, checkpoint: str, console: Console,
                 data_dir: Path | None = None, scorers=None) -> tuple[dict, Path]:
    """Recompute a run's metrics; returns them and the file they were written to
    (<run>/eval_<split>_<checkpoint>.json). Config, checkpoint and data are all checked (the data
    read) before the model is loaded, so a missing piece fails in seconds. `scorers` (as for
    train.Trainer: salora_cli.transfer.style_scoring.attach_scorers) gives a style task its evaluation classifier
    and fluency LM on its final split (test), so the metrics are the ones the run recorded there."""
    cfg = rd.load_config(run_dir)
    if data_dir is not None:
        cfg.data_dir = str(Path(data_dir).expanduser().absolute())
    _check_data_dir(cfg, run_dir)
    folder = _folder(run_dir, checkpoint)
    task = _task(cfg)
    split = split or task.eval_split
    examples = eval_examples(cfg, task, split)
    if split == task.final_eval_split and cfg.style_scoring and task.uses_scorer_models and scorers is not None:
        scorers(task, cfg, console)
    method, tokenizer = _load(cfg, task, folder)
    examples = task.fit_to_length(tokenizer, examples, cfg.train.max_length, split)  # as the run did
    model = method.model
    model.eval()
    with torch.no_grad(), run_precision(cfg):
        metrics = task.evaluate(model, tokenizer, examples, batch_size=cfg.train.eval_batch_size,
                                max_length=cfg.train.max_length, device=_device())
    recorded = _recorded(run_dir, checkpoint, split, task.eval_split)
    table = Table(title=f"{cfg.task} · {cfg.method} · {checkpoint} checkpoint · {split}")
    table.add_column("metric")
    table.add_column("now", justify="right")
    table.add_column("recorded in metrics.json", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.2f}", f"{recorded[k]:.2f}" if k in recorded else "")
    console.print(table)
    flag = degenerate_flag(task)
    if flag:
        console.print(f"[yellow]warning:[/] every prediction is class {flag['predicted_class']!r}: "
                      "a degenerate (majority-class) classifier", highlight=False)
    written = run_dir / f"eval_{split}_{checkpoint}.json"
    atomic.write_json(written, {"split": split, "checkpoint": checkpoint, "metrics": metrics, **flag})
    return metrics, written


def eval_examples(cfg, task, split: str | None = None) -> list:
    """A split's examples; for the run's eval split, the same seeded subset the run evaluated."""
    split = split or task.eval_split
    data = task.load_splits(cfg.data_dir, seed=cfg.train.seed, **_only(task, split))
    if split not in data:
        raise SaloraError(f"task {cfg.task} has no split '{split}' (available: {', '.join(data)})")
    if split == task.eval_split:
        return subset(data[split], cfg.train.max_eval_samples, cfg.train.seed)
    return data[split]


def _only(task, split: str) -> dict:
    # GLUE tasks can load a single split; others load everything they have
    import inspect

    if "splits" in inspect.signature(task.load_splits).parameters:
        return {"splits": (split,)}
    return {}


def _recorded(run_dir: Path, checkpoint: str, split: str, eval_split: str) -> dict:
    """What metrics.json holds for this split and checkpoint (empty if nothing comparable): the
    test entry for the split scored once after training, best/final for the split evaluated during it."""
    import json

    try:
        data = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    test = data.get("test") or {}
    if split == test.get("split"):  # with the checkpoint it names (older runs: the final weights)
        return test.get("metrics", {}) if test.get("checkpoint", "final") == checkpoint else {}
    if split != eval_split:
        return {}
    return (data.get("best" if checkpoint == "best" else "final") or {}).get("metrics", {})


def export_run(run_dir: Path, out: Path, checkpoint: str = "best", overwrite: bool = False) -> dict[str, int]:
    check_export_target(run_dir, out, overwrite)
    cfg = rd.load_config(run_dir)
    exportable = [name for name, s in REGISTRY.items() if s.peft_export]
    if cfg.method not in exportable:  # known from the config: no need to load the model
        raise SaloraError(f"export needs a {' or '.join(exportable)} run; {run_dir} is a {cfg.method} run")
    folder = _folder(run_dir, checkpoint)
    task = _task(cfg)
    method, _ = _load(cfg, task, folder)
    base = resolve_model(cfg.model)
    if not _is_empty_or_missing(out):  # an earlier export, and --overwrite: swap in the new one
        ranks: dict[str, int] = {}
        rd.replace_folder(out, lambda tmp: ranks.update(method.handle.export_peft(tmp, base)))
        return ranks
    return method.handle.export_peft(out, base)


def _is_run_folder(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and any(
        (folder / name).exists() for name in ("metrics.json", "command.txt"))


def _is_empty_or_missing(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def check_export_target(run_dir: Path, out: Path, overwrite: bool) -> None:
    """Refuse, before the model is loaded, an OUT that would destroy something: a place inside any
    run folder (`export RUN RUN/adapter` once replaced the run's own final weights), or an existing
    folder that is not an earlier export (and an earlier export without --overwrite)."""
    target, run = out.expanduser().resolve(), run_dir.expanduser().resolve()
    inside = next((f for f in (target, *target.parents) if f == run or _is_run_folder(f)), None)
    if inside is not None:
        raise SaloraError(f"{out} is inside the run folder {inside}; export never writes into a run: "
                          "choose an OUT outside it")
    if _is_empty_or_missing(target):
        return
    if not target.is_dir():
        raise SaloraError(f"{out} is an existing file; choose another OUT")
    if not (target / "adapter_config.json").is_file():
        raise SaloraError(f"{out} already exists and is not an exported adapter (no adapter_config.json); "
                          "refusing to replace it: choose another OUT")
    if not overwrite:
        raise SaloraError(f"{out} already holds an exported adapter; pass --overwrite to replace it, "
                          "or choose another OUT")


def run_precision(cfg):
    """The autocast the run's own evaluations ran under (accelerate wraps a mixed-precision run's forward
    in one), so `salora eval` scores the reloaded run as the run scored itself: a bf16 run's predictions
    near a tie, or a regression's correlation, differ between bf16 and fp32 products."""
    precision = cfg.train.mixed_precision
    if precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(device_type=_device().type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
