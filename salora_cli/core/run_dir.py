"""The run folder: what it holds, and writing it safely.

    config.yaml     resolved config (YAML < CLI)        command.txt   the exact command line
    env.json        versions, device, processes          log.jsonl     one JSON line per logged step
    metrics.json    every evaluation, best and final     ranks.json    learned ranks and trajectory
    adapter/        final weights (safetensors)          best/         best checkpoint's weights
    checkpoints/last/  resumable state (weights, optimizer, scheduler, RNG, data position)
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path

import yaml

from salora_cli.core import atomic, faults
from salora_cli.core.config import RunConfig, build_config, first_difference, to_yaml
from salora_cli.core.errors import SaloraError

DEFAULT_RUNS = Path("runs")


def default_run_dir(cfg: RunConfig) -> Path:
    task = cfg.task.replace("/", "-")
    return DEFAULT_RUNS / f"{task}_{cfg.method}_seed{cfg.train.seed}"


def is_finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status") == "finished"
    except (OSError, json.JSONDecodeError):
        return False


RUN_MARKERS = ("config.yaml", "command.txt", "metrics.json", "log.jsonl")  # written by every run


def check(run_dir: Path, cfg: RunConfig, resume: bool, overwrite: bool = False) -> None:
    """Refuse, before anything is written, to clobber a run or anything that is not a run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SaloraError(f"run folder {run_dir} is an existing file, not a folder; choose another --out")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not any((run_dir / name).exists() for name in RUN_MARKERS):
            raise SaloraError(f"{run_dir} already exists and is not a run folder (no config.yaml); "
                              "refusing to write into or replace it: choose another --out")
        if resume:
            diff = first_difference(load_config(run_dir), cfg)
            if diff:
                key, saved, now = diff
                raise SaloraError(f"--resume: the config differs from the one saved in {run_dir} "
                                  f"({key}: saved {saved!r}, now {now!r})")
        elif not overwrite:
            raise SaloraError(f"run folder {run_dir} already exists; pass --resume to continue it, "
                              "--overwrite to replace it, or choose another --out")


def prepare(run_dir: Path, cfg: RunConfig, resume: bool, overwrite: bool = False) -> None:
    """Create the run folder (after `check`); with overwrite, the old run is replaced now."""
    check(run_dir, cfg, resume, overwrite)
    if overwrite and not resume and run_dir.is_dir() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(run_dir / "config.yaml", to_yaml(cfg))
        with open(run_dir / "command.txt", "a", encoding="utf-8") as fh:  # every (re)start, in order
            fh.write(shlex.join(sys.argv) + "\n")
    except OSError as exc:
        raise SaloraError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from exc


def load_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.yaml"
    if not run_dir.exists():
        raise SaloraError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise SaloraError(f"{run_dir} is not a run folder (config.yaml missing)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SaloraError(f"{path} is not valid YAML{where}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SaloraError(f"{path} is unreadable ({exc})") from exc
    if data is None:  # an empty file would silently become the default config
        raise SaloraError(f"{path} is empty: the run's config is lost")
    if not isinstance(data, dict):
        raise SaloraError(f"{path} is corrupted: expected a mapping of config keys, got {type(data).__name__}")
    try:
        return build_config(data)
    except SaloraError as exc:
        raise SaloraError(f"{path} is invalid: {exc}") from exc


def environment(num_processes: int, device: str, mixed_precision: str) -> dict:
    import accelerate
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "accelerate": accelerate.__version__,
        "device": device, "num_processes": num_processes, "mixed_precision": mixed_precision,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def append_log(run_dir: Path, record: dict) -> None:
    path = run_dir / "log.jsonl"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:  # a line cut here is dropped on resume (truncate_log)
        raise atomic.unwritable(path, exc) from exc


def truncate_log(run_dir: Path, step: int) -> None:
    """Drop log lines after `step` (a resumed run logs those steps again)."""
    path = run_dir / "log.jsonl"
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut by the crash
            continue
    atomic.write_text(path, "".join(f"{line}\n" for line in keep))


def completed_folder(target: Path, marker: str) -> Path | None:
    """The folder replace_folder last put in place, recognised by `marker` (its last file written):
    `target`, or `target.old` when a crash fell between moving it aside and renaming the new one in."""
    for folder in (target, target.with_name(target.name + ".old")):
        if (folder / marker).is_file():
            return folder
    return None


def replace_folder(target: Path, write) -> None:
    """Write a folder via `write(tmp)` then swap it in, so a crash never leaves half a checkpoint
    (see completed_folder for the one moment when the old one is at `target.old`). A failed write
    leaves `target` as it was and removes the half-written folder."""
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
    except OSError as exc:  # the folder itself, or a plain copy inside `write`
        shutil.rmtree(tmp, ignore_errors=True)
        raise atomic.unwritable(exc.filename or tmp, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            faults.reached(f"{target.name}_swap")
        tmp.rename(target)
    except OSError as exc:
        raise atomic.unwritable(target, exc) from exc
    shutil.rmtree(old, ignore_errors=True)
