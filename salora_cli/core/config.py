"""A run's configuration: typed dataclasses, YAML in and out, overrides, and strict validation.

Precedence: dataclass defaults < YAML file (--config) < named CLI flags and `--set key=value`.
Unknown keys and values of the wrong type are errors that name the key.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from salora.config import AdapterConfig
from salora_cli.core.errors import SaloraError

from salora_cli.core.method_registry import METHODS, REGISTRY  # names only: no torch import
# accelerate's trackers (accelerate.utils.LoggerType), by the name `report_to` takes, and the package each needs
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
            "aim": "aim", "clearml": "clearml", "dvclive": "dvclive"}


@dataclass
class TrainConfig:
    # Each field's help is its metadata["help"] (shown by the `salora train` flags).
    lr: float = field(default=5e-4, metadata={"help": "Learning rate (adapters and head)"})
    epochs: float = field(default=3.0, metadata={"help": "Training epochs (fractions allowed)"})
    max_steps: int | None = field(default=None, metadata={"help": (
        "Optimizer steps; overrides epochs when given")})
    batch_size: int = field(default=32, metadata={"help": "Training batch size (per process)"})
    eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size (per process)"})
    grad_accum: int = field(default=1, metadata={"help": "Batches accumulated per optimizer step"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_fraction: float = field(default=0.06, metadata={"help": (
        "Fraction of the optimizer steps spent in linear learning-rate warmup")})
    max_length: int = field(default=128, metadata={"help": (
        "Maximum tokens per example (instruction tuning: the cutoff; the prompt is kept whole, the response "
        "cut at its end, and a record whose prompt leaves no room is dropped and counted)")})
    group_by_length: bool = field(default=False, metadata={"help": (
        "Batch examples of similar length together (less padding; salora_cli/run/batching.py)")})
    eval_every: int | None = field(default=None, metadata={"help": (
        "Evaluate every N steps; not given: once per epoch (and always at the end)")})
    eval_start: float = field(default=0.0, metadata={"help": (
        "Fraction of training before which no dev evaluation runs (the end is always evaluated). "
        "The cpu grid uses 0.6, where SaLoRA's and AdaLoRA's rank reaches the budget: their best "
        "checkpoint is chosen among evaluations at the budget only, so every method then chooses "
        "among the same steps, and no evaluation is spent on checkpoints no table can show")})
    max_train_samples: int | None = field(default=None, metadata={"help": (
        "Train on a seeded random subset of this size")})
    max_eval_samples: int | None = field(default=None, metadata={"help": (
        "Evaluate on a seeded random subset of this size")})
    log_every: int = field(default=1, metadata={"help": "Steps between log.jsonl lines"})
    checkpoint_every: int | None = field(default=None, metadata={"help": (
        "Steps between resumable checkpoints; not given: at each evaluation")})
    mixed_precision: str = field(default="no", metadata={"help": (
        "no | fp16 (GPU) | bf16 (GPU, or autocast on the CPU): the matrix products run in that precision; "
        "weights, SaLoRA's gates, λ and budget multiplier stay fp32")})
    seed: int = field(default=0, metadata={"help": "Random seed"})
    report_to: str | None = field(default=None, metadata={"help": (
        "Experiment trackers, comma-separated, through accelerate (tensorboard, wandb, mlflow, comet_ml, "
        "aim, clearml, dvclive); their files go to <run>/tracking. Not given: the run folder's own logs "
        "only.")})

    def validate(self) -> None:
        if not 0.0 <= self.eval_start <= 1.0:
            raise SaloraError(f"train.eval_start must be a fraction in [0, 1], got {self.eval_start}")
        for name in ("lr", "epochs"):
            if getattr(self, name) <= 0:
                raise SaloraError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("batch_size", "eval_batch_size", "grad_accum", "max_length", "log_every"):
            if getattr(self, name) < 1:
                raise SaloraError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "eval_every", "max_train_samples", "max_eval_samples",
                     "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SaloraError(f"train.{name} must be >= 1 when given, got {value}")
        if not 0 <= self.warmup_fraction < 1:
            raise SaloraError(f"train.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise SaloraError(f"train.mixed_precision must be no, fp16 or bf16, got {self.mixed_precision}")
        unknown = [t for t in self.trackers() if t not in TRACKERS]
        if unknown:
            raise SaloraError(f"train.report_to: unknown tracker '{unknown[0]}' (known: {', '.join(TRACKERS)})")

    def trackers(self) -> list[str]:
        return [t.strip() for t in (self.report_to or "").split(",") if t.strip() and t.strip() != "none"]


@dataclass
class RunConfig:
    # Each field's help is its metadata["help"] (shown by the `salora train` flags).
    task: str = field(default="glue/sst2", metadata={"help": (
        "<family>/<task>, e.g. glue/sst2, style/yelp or instruct/alpaca")})
    method: str = field(default="salora", metadata={"help": " | ".join(METHODS)})
    model: str = field(default="minilm-l6", metadata={"help": "Hub id, local folder, or offline alias"})
    data_dir: str | None = field(default=None, metadata={"help": (
        "The task's data folder (default: under $SALORA_DATA, else the Hugging Face hub); instruction "
        "tuning also takes the data file itself")})
    task_options: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "Task-specific settings (e.g. style transfer: direction, train_pool, num_beams; instruction tuning: "
        "dev_size, dev_seed, hub_dataset); the task checks the names.")})
    style_scoring: bool = field(default=True, metadata={"help": (
        "Style transfer: score the test split's outputs with a style classifier (trained once by this "
        "runner and cached) and a fluency LM (the base model); off: BLEU and self-BLEU only")})
    adapter: AdapterConfig = field(default_factory=AdapterConfig, metadata={"help": "Adapter settings"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Training settings"})

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SaloraError(f"unknown method '{self.method}' (known: {', '.join(METHODS)})")
        self.adapter.method = REGISTRY[self.method].adapter_kind
        self.adapter.validate()
        self.train.validate()
        self.data_dir = absolute_path(self.data_dir)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ building from dicts
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except SaloraError as exc:
                errors.append(str(exc))
        raise SaloraError(errors[0])
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SaloraError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(f"{key}[]", v, item) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise SaloraError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # nan slips past every `<= 0` check; inf overflows step counts
                raise SaloraError(f"{key} must be a finite number, got {value!r}")
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise SaloraError(f"{key} must be {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise SaloraError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f" in {prefix}" if prefix else ""
        raise SaloraError(f"unknown config key '{unknown[0]}'{where} (valid: {', '.join(names)})")
    kwargs = {k: _coerce(f"{prefix}.{k}" if prefix else k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def merge_dicts(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise SaloraError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SaloraError(f"config file {path} is not valid YAML{where}") from exc
    if not isinstance(data, dict):
        raise SaloraError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def parse_assignment(text: str) -> dict:
    """'train.lr=1e-3' -> {'train': {'lr': 0.001}}; values are parsed as YAML scalars."""
    if "=" not in text:
        raise SaloraError(f"--set expects KEY=VALUE, got '{text}'")
    key, raw = text.split("=", 1)
    value = _parse_scalar(raw)
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _parse_scalar(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def build_config(*layers: dict) -> RunConfig:
    """Merge config layers (later wins), build the typed config and validate it."""
    merged: dict = {}
    for layer in layers:
        merged = merge_dicts(merged, layer)
    if isinstance(merged.get("adapter"), dict):
        # AdapterConfig validates itself on construction, so it must know the method first: a plain
        # LoRA run ignores the budget (e.g. `--method lora --rank 2` under a YAML with budget 8).
        method = merged.get("method", RunConfig.method)
        kind = REGISTRY[method].adapter_kind if method in REGISTRY else "salora"  # unknown: validate() says so
        merged["adapter"] = {**merged["adapter"], "method": kind}
    cfg = _build(RunConfig, merged)
    cfg.validate()
    return cfg


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def all_keys() -> list[str]:
    """Every settable dotted key (for help texts)."""
    keys = []
    for f in dataclasses.fields(RunConfig):
        if dataclasses.is_dataclass(f.default_factory) if f.default_factory is not dataclasses.MISSING else False:
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(f.default_factory)]
        else:
            keys.append(f.name)
    return keys


def first_difference(a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = ()) -> tuple[str, Any, Any] | None:
    """The first dotted key (alphabetically) whose value differs, with both values; None if equal."""
    return first_dict_difference(a.to_dict(), b.to_dict(), ignore)


def first_dict_difference(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> tuple[str, Any, Any] | None:
    """first_difference for plain (nested) dicts, e.g. a saved config section against today's settings."""
    fa, fb = _flatten(a), _flatten(b)
    changed = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and k not in ignore)
    return (changed[0], fa.get(changed[0]), fb.get(changed[0])) if changed else None


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def absolute_path(path: str | os.PathLike | None) -> str | None:
    """An absolute form of a user-given path, so a saved config still finds its data when the run
    is evaluated from another working directory (symlinks are kept as the user named them)."""
    return os.path.abspath(os.path.expanduser(path)) if path else None


FAMILY_FOLDERS = ("glue", "instruct")  # families whose tasks share one folder under the data root
NAMED_FILES = ("classify",)  # families whose files are named one by one (task_options), not found in a folder


def default_data_dir(data_root: str | os.PathLike | None, task: str) -> str | None:
    """A task's folder under a data root ($SALORA_DATA): <root>/glue for GLUE, <root>/instruct for
    instruction tuning (one folder of Alpaca-format files), <root>/<name> else."""
    family, name = task.split("/", 1)
    if not data_root or family in NAMED_FILES:
        return None
    sub = Path(data_root) / (family if family in FAMILY_FOLDERS else name)
    return absolute_path(sub) if sub.exists() else None
