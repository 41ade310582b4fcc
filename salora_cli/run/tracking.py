"""Experiment trackers (`train.report_to`) through accelerate: TensorBoard, W&B, MLflow, ...

One run = one tracker run named after the run folder, with the run config as hyperparameters.
Logged at each log line: losses, learning rate, expected / open rank, target, multiplier; at each
rank-trajectory point: the physical total rank, its target, removals by cause, rank per role; at each
evaluation: the metrics (``eval/<name>``). Files go to ``<run>/tracking`` (TensorBoard's event files,
MLflow's local store...); online trackers use their own settings (WANDB_MODE=offline etc.).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from salora_cli.core.config import TRACKERS, RunConfig, _flatten
from salora_cli.core.errors import SaloraError

TRACKING_DIR = "tracking"


def check_installed(trackers: list[str]) -> None:
    """A tracker whose package is missing is a one-line error before anything runs (accelerate
    would only warn and drop it)."""
    for name in trackers:
        package = TRACKERS[name]
        if importlib.util.find_spec(package) is None:
            raise SaloraError(f"--report-to {name} needs the '{package}' package: pip install {package}")


def hyperparameters(cfg: RunConfig) -> dict[str, str | int | float | bool]:
    """The config as flat scalars (trackers such as TensorBoard's hparams take nothing else)."""
    flat = _flatten(cfg.to_dict())
    return {k: v if isinstance(v, (int, float, bool, str)) else str(v) for k, v in flat.items()}


class Tracking:
    """What the training loop reports to the trackers; does nothing when there are none."""

    def __init__(self, accelerator, cfg: RunConfig, out: Path):
        self.accelerator = accelerator
        self.enabled = bool(cfg.train.trackers())
        self.cfg, self.out = cfg, out

    def start(self) -> None:
        if self.enabled:
            self.accelerator.init_trackers(self.out.name, config=hyperparameters(self.cfg))

    def log_step(self, logs: dict) -> None:
        if self.enabled:
            self.accelerator.log({f"train/{k}": v for k, v in logs.items()
                                  if k != "step" and isinstance(v, (int, float))}, step=logs["step"])

    def log_ranks(self, entry: dict) -> None:
        if not self.enabled:
            return
        values = {f"rank/{k}": v for k, v in entry.items() if isinstance(v, (int, float)) and k != "step"}
        values.update({f"rank/role/{role}": r for role, r in entry.get("per_role", {}).items()})
        self.accelerator.log(values, step=entry["step"])

    def log_eval(self, record: dict, prefix: str = "eval") -> None:
        if self.enabled:
            self.accelerator.log({f"{prefix}/{k}": v for k, v in record["metrics"].items()}, step=record["step"])

    def end(self) -> None:
        if self.enabled:
            self.accelerator.end_training()
