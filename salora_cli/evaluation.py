"""Reload a run from its folder alone (config + saved weights): re-evaluate or export it."""
from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import tasks
from salora_cli import atomic, run_dir as rd
from salora_cli.adapters import export_peft
from salora_cli.errors import SaloraError
from salora_cli.methods import AdapterMethod, load_method
from salora_cli.models import resolve_model
from salora_cli.train import subset

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
    task = tasks.get(cfg.task)
    if hasattr(task, "configure"):
        task.configure(**cfg.task_options)
    model, tokenizer = task.build_model(cfg.model)
    method = load_method(model, cfg, _folder(run_dir, checkpoint))
    return cfg, task, method, tokenizer


def evaluate_run(run_dir: Path, split: str | None, checkpoint: str, console: Console) -> dict:
    cfg, task, method, tokenizer = reload_run(run_dir, checkpoint)
    split = split or task.eval_split
    examples = eval_examples(cfg, task, split)
    model = method.model
    model.eval()
    with torch.no_grad():
        metrics = task.evaluate(model, tokenizer, examples, batch_size=cfg.train.eval_batch_size,
                                max_length=cfg.train.max_length, device=_device())
    recorded = _recorded(run_dir, checkpoint)
    table = Table(title=f"{cfg.task} · {cfg.method} · {checkpoint} checkpoint · {split}")
    table.add_column("metric")
    table.add_column("now", justify="right")
    table.add_column("recorded in metrics.json", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.2f}", f"{recorded[k]:.2f}" if k in recorded else "")
    console.print(table)
    atomic.write_json(run_dir / f"eval_{split}_{checkpoint}.json",
                      {"split": split, "checkpoint": checkpoint, "metrics": metrics})
    return metrics


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


def _recorded(run_dir: Path, checkpoint: str) -> dict:
    import json

    try:
        data = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    entry = data.get("best" if checkpoint == "best" else "final") or {}
    return entry.get("metrics", {})


def export_run(run_dir: Path, out: Path, checkpoint: str = "best") -> dict[str, int]:
    cfg, _, method, _ = reload_run(run_dir, checkpoint)
    if not isinstance(method, AdapterMethod):
        raise SaloraError(f"export needs a salora or lora run; {run_dir} is a {cfg.method} run")
    base = resolve_model(cfg.model)
    return export_peft(method.model, method.adapters, out, base_model_name_or_path=base)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
