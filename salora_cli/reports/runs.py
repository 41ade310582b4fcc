"""Find run folders and load their metrics.json into a small typed record.

A run folder is any folder holding `metrics.json` (written by the training loop at the end of a
run). Only runs with status "finished" enter reports: a crashed or still-running run would
otherwise bias a mean over seeds without anyone noticing, so it is skipped with a note instead.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from salora_cli.core.errors import SaloraError

METRICS_FILE = "metrics.json"
RANKS_FILE = "ranks.json"
GENERATIONS_FILE = "generations.jsonl"
CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.txt"


def read_json(path: Path, what: str = "file") -> Any:
    """Parse a JSON file; a missing or corrupted file is a user-facing, one-line SaloraError."""
    path = Path(path)
    if not path.is_file():
        raise SaloraError(f"{what} missing: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SaloraError(f"{path} is corrupted (invalid JSON: {exc.msg} at line {exc.lineno}, "
                          f"column {exc.colno})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SaloraError(f"{path} is unreadable ({_one_line(exc)})") from exc


def read_generations(path: Path, limit: int | None = None) -> list[dict]:
    """The first `limit` records of a generations.jsonl file (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out: list[dict] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if limit is not None and len(out) >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SaloraError(f"{path} is corrupted (line {lineno}: {exc.msg})") from exc
                if not isinstance(record, dict):
                    raise SaloraError(f"{path} is corrupted (line {lineno} is not a JSON object)")
                out.append(record)
    except (OSError, UnicodeDecodeError) as exc:
        raise SaloraError(f"{path} is unreadable ({_one_line(exc)})") from exc
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _number(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric / NaN values (they never enter a mean)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _metrics(block: Any) -> dict[str, float]:
    if not isinstance(block, dict):
        return {}
    raw = block.get("metrics", {})
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in ((k, _number(v)) for k, v in raw.items()) if v is not None}


def _int(value: Any) -> int | None:
    x = _number(value)
    return None if x is None else int(round(x))


@dataclass(frozen=True)
class RunRecord:
    """What the reports need from one run's metrics.json.

    `best` holds the metrics of the best dev checkpoint (selected by the main metric), `final`
    those at the last step, `test` those of a held-out test evaluation when the run made one
    (style tasks evaluate the test split at the end); each is a {metric: value} dict.
    """

    path: Path
    task: str
    method: str
    seed: int | None
    model: str
    main_metric: str
    status: str
    best: dict[str, float]
    best_step: int | None
    final: dict[str, float]
    final_step: int | None
    test: dict[str, float]
    params_initial: int | None
    params_final: int | None
    train_time_s: float | None
    steps: int | None
    raw: dict = field(repr=False, compare=False, default_factory=dict)
    lr: float | None = None  # train.lr from config.yaml
    budget: float | None = None  # the final average rank per matrix (ranks.json); None: no rank (full, BitFit)

    @property
    def family(self) -> str:
        """"glue", "style", "instruct", "transfer" (zero-shot, salora transfer) or "other": each family gets
        its own metric table."""
        head = self.task.split("/", 1)[0] if "/" in self.task else ""
        return head if head in ("glue", "style", "instruct", "transfer") else "other"

    @property
    def generations_path(self) -> Path:
        return self.path / GENERATIONS_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def command_path(self) -> Path:
        return self.path / COMMAND_FILE

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def key(self) -> tuple[str, str, str, int | None, float | None, float | None]:
        """(task, method, model, seed, budget, lr): two folders with the same key are the same
        experiment (an lr grid or two budgets give one seed several runs that are not reruns)."""
        return (self.task, self.method, self.model, self.seed, self.budget, self.lr)


def first_seed_per_task(runs: Iterable[RunRecord], method: str) -> dict[str, RunRecord]:
    """Each task's run of `method` with the lowest seed (the one rank maps and timings show)."""
    firsts: dict[str, RunRecord] = {}
    for run in sorted(runs, key=lambda r: (r.task, r.seed or 0)):
        if run.method == method:
            firsts.setdefault(run.task, run)
    return firsts


def load_run(run_dir: str | os.PathLike) -> RunRecord:
    """Load one run folder; a folder without metrics.json or with a corrupted one raises SaloraError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SaloraError(f"run folder not found: {run_dir}")
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise SaloraError(f"{run_dir} is not a finished run folder ({METRICS_FILE} missing)")
    data = read_json(path, METRICS_FILE)
    if not isinstance(data, dict):
        raise SaloraError(f"{path} is corrupted (expected a JSON object, got {type(data).__name__})")
    missing = [k for k in ("task", "method") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise SaloraError(f"{path} is corrupted (no {' / '.join(missing)})")

    best_block, final_block = data.get("best"), data.get("final")
    final = _metrics(final_block)
    final_step = _int(final_block.get("step")) if isinstance(final_block, dict) else None
    evals = [e for e in data.get("evals") or [] if isinstance(e, dict)]

    # A test evaluation can be stored as a top-level "test" block, as an eval entry with split
    # "test", or as the "final" block itself; the dev-side "final" then is the last dev eval.
    test = _metrics(data.get("test"))
    if not test:
        test_evals = [e for e in evals if e.get("split") == "test"]
        if test_evals:
            test = _metrics(test_evals[-1])
    if isinstance(final_block, dict) and final_block.get("split") == "test":
        test = test or final
        dev_evals = [e for e in evals if e.get("split", "dev") != "test"]
        final = _metrics(dev_evals[-1]) if dev_evals else {}
        final_step = _int(dev_evals[-1].get("step")) if dev_evals else None

    best = _metrics(best_block)
    best_step = _int(best_block.get("step")) if isinstance(best_block, dict) else None
    if not best:  # a run with no evaluation during training: its final numbers are all there is
        best, best_step = dict(final), final_step

    params = data.get("trainable_params") if isinstance(data.get("trainable_params"), dict) else {}
    return RunRecord(
        path=run_dir,
        task=data["task"],
        method=data["method"],
        seed=_int(data.get("seed")),
        model=str(data.get("model") or "?"),
        main_metric=str(data.get("main_metric") or (next(iter(best), "") if best else "")),
        status=str(data.get("status") or "unknown"),
        best=best,
        best_step=best_step,
        final=final,
        final_step=final_step,
        test=test,
        params_initial=_int(params.get("initial")),
        params_final=_int(params.get("final")),
        train_time_s=_number(data.get("train_time_s")),
        steps=_int(data.get("steps")),
        raw=data,
        # a transfer folder (salora transfer) takes them from the run it transferred, if any
        lr=_config_lr(_settings_dir(run_dir, data) / CONFIG_FILE),
        budget=_budget(_settings_dir(run_dir, data) / RANKS_FILE),
    )


def best_in_common_window(runs: Iterable[RunRecord]) -> list[RunRecord]:
    """`runs` with each best checkpoint re-chosen among the evaluations made once every run of its
    comparison had reached its final budget.

    A run's own best is chosen among its evaluations at its final budget; SaLoRA reaches its budget
    later than LoRA (removal runs until its ramp ends), so on its own a LoRA run would pick its best
    among more evaluations than a SaLoRA run, and a best of three beats a best of two by chance alone.
    Runs compared in one table (same task, model, steps and evaluation steps) therefore share one
    window: the evaluations from the latest first-at-budget step among them on. A run with no
    evaluation in that window keeps its own best.
    """
    runs = list(runs)
    groups: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.task, run.model, run.steps, tuple(e.get("step") for e in _dev_evals(run))),
                          []).append(run)
    starts: dict[int, int] = {}
    for group in groups.values():
        firsts = [next((e.get("step") for e in _dev_evals(r) if e.get("at_budget", True)), None) for r in group]
        if any(f is None for f in firsts) or not firsts:
            continue
        for run in group:
            starts[id(run)] = max(firsts)
    return [_rebest(run, starts[id(run)]) if id(run) in starts else run for run in runs]


def _dev_evals(run: RunRecord) -> list[dict]:
    return [e for e in run.raw.get("evals") or []
            if isinstance(e, dict) and e.get("split", "dev") != "test" and isinstance(e.get("step"), int)
            and _metrics(e).get(run.main_metric) is not None]


def _rebest(run: RunRecord, start: int) -> RunRecord:
    window = [e for e in _dev_evals(run) if e["step"] >= start]
    if not window:
        return run
    chosen = max(window, key=lambda e: (_metrics(e)[run.main_metric], -e["step"]))  # ties: the earlier
    block = {k: v for k, v in chosen.items() if k not in ("epoch", "split", "at_budget")}
    return dataclasses.replace(run, best=_metrics(chosen), best_step=chosen["step"], raw={**run.raw, "best": block})


def _settings_dir(run_dir: Path, data: dict) -> Path:
    subject = data.get("subject_run") if data.get("kind") == "transfer" else None
    return Path(subject) if isinstance(subject, str) and Path(subject).is_dir() else run_dir


def read_config(path: Path) -> dict:
    """A run's config.yaml as a dict; {} when it cannot be read (reports never fail on it)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _config_lr(path: Path) -> float | None:
    """train.lr of a run's config.yaml; None when it cannot be read."""
    train = read_config(path).get("train")
    return _number(train.get("lr")) if isinstance(train, dict) else None


def _budget(path: Path) -> float | None:
    """The average rank per matrix the run ended at or under, as the run itself recorded it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return _number(data.get("budget_avg")) if isinstance(data, dict) else None


@dataclass
class RunScan:
    """The finished runs found under some paths, and a note for every run that was left out."""

    runs: list[RunRecord]
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)


def _metrics_files(root: Path) -> list[Path]:
    if root.is_file():
        if root.name != METRICS_FILE:
            raise SaloraError(f"{root} is neither a run folder nor a {METRICS_FILE}")
        return [root]
    return sorted(root.rglob(METRICS_FILE))


def find_runs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> RunScan:
    """All finished runs under `paths` (searched recursively for folders holding metrics.json).

    Unfinished runs are skipped with a note; when two folders hold the same task/method/model/seed
    (and budget and lr) the newest metrics.json wins (a rerun), so a seed is never counted twice in a mean.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    roots = [Path(p) for p in paths]
    if not roots:
        raise SaloraError("no run folders given")
    for root in roots:
        if not root.exists():
            raise SaloraError(f"no such file or folder: {root}")

    seen: set[Path] = set()
    runs: list[RunRecord] = []
    notes: list[str] = []
    for root in roots:
        for metrics_file in _metrics_files(root):
            run_dir = metrics_file.parent.resolve()
            if run_dir in seen:  # overlapping paths (runs/ and runs/glue) list a run twice
                continue
            seen.add(run_dir)
            run = load_run(metrics_file.parent)
            if not run.finished:
                notes.append(f"skipped {run.path}: status '{run.status}' (only finished runs are reported)")
                continue
            runs.append(run)

    where = ", ".join(str(r) for r in roots)
    if not runs:
        if notes:
            raise SaloraError(f"no finished runs under {where} ({len(notes)} unfinished run(s) skipped)")
        raise SaloraError(f"no runs found under {where} (a run folder holds {METRICS_FILE})")

    newest: dict[tuple, RunRecord] = {}
    for run in runs:
        other = newest.get(run.key)
        if other is None:
            newest[run.key] = run
            continue
        keep, drop = sorted((run, other), key=lambda r: (r.path / METRICS_FILE).stat().st_mtime,
                            reverse=True)
        newest[run.key] = keep
        notes.append(f"skipped {drop.path}: same task/method/model/seed/budget/lr as the newer {keep.path}")
    kept = set(id(r) for r in newest.values())
    return RunScan([r for r in runs if id(r) in kept], notes)
