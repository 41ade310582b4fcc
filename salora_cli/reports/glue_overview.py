"""The paper's GLUE table at one rank budget, with whether each task was learned and one verdict.

What `results/glue.md` opens with (issue 36), built from the rows of the main budget's table:

- **The table.** A row per method in the papers' order (full fine-tuning, BitFit, LoRA, AdaLoRA,
  SaLoRA) with its trainable parameters, a column per GLUE task in the papers' order with the task's
  official metrics (mean over seeds at the best dev checkpoint), and the average column: the mean
  over the eight tasks of each task's main metric (tasks/metrics.py GLUE_MAIN_METRIC), only for a
  method that has all eight. WNLI is not a column (GLUE averages in the papers leave it out).
- **Sampled tasks.** A task whose runs trained or were scored on fewer rows than the official GLUE
  files hold is marked, with the rows used: metrics.json `train_examples` / `eval_examples`, else
  config.yaml `train.max_train_samples` / `train.max_eval_samples` (a cap), else "not recorded".
- **Learned or not.** A task is learned when its best method's main metric reaches the majority
  class + 5 points (CoLA: MCC 20, STS-B: Pearson 70, whatever the constant predictor scores). The
  majority-class score is metrics.json `majority_baseline[<main metric>]` where a run recorded it,
  otherwise the main metric of always predicting the dev split's most common class (a regression
  task: its mean score), computed from the dev labels read through the task's own loader with the
  run's config.yaml (data_dir, task options, eval subset), once per task and data.
- **One verdict.** SaLoRA − LoRA and SaLoRA − AdaLoRA per task, paired by seed (the seeds both ran),
  with the paired-t interval of PairedDifference; and over the learned tasks: the mean over tasks of
  the per-task mean paired difference (each in its task's main-metric points), with a 95 % interval
  from a stratified bootstrap that resamples the seed pairs within each task
  (BOOTSTRAP_RESAMPLES resamples, numpy's default_rng(BOOTSTRAP_SEED), percentile interval).
"""
from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

from salora_cli.reports.metrics_table import (DAGGER, DEGENERATE_FOOTNOTE, GLUE_LABELS, MetricsRow,
                                              PairedDifference, _count_text, _Section, metric_label,
                                              paired_difference, verdict_of)
from salora_cli.reports.runs import RunRecord, read_config

# The column order of the LoRA / AdaLoRA / SaLoRA GLUE tables, and their row order.
PAPER_TASKS = ("mnli", "sst2", "cola", "qqp", "qnli", "rte", "mrpc", "stsb")
PAPER_METHODS = ("full", "bitfit", "lora", "adalora", "salora")
METHOD_NAMES = {"full": "Full FT", "bitfit": "BitFit", "lora": "LoRA", "adalora": "AdaLoRA", "salora": "SaLoRA"}
# Each task's official metrics, the main one first (the same main metric as tasks.metrics.GLUE_MAIN_METRIC,
# which is not imported here: it pulls in scikit-learn; tests/test_glue_overview.py checks they agree).
OFFICIAL_METRICS = {
    "mnli": ("accuracy_m", "accuracy_mm"), "sst2": ("accuracy",), "cola": ("matthews_corrcoef",),
    "qqp": ("accuracy", "f1"), "qnli": ("accuracy",), "rte": ("accuracy",), "mrpc": ("accuracy", "f1"),
    "stsb": ("pearson", "spearman"),
}
# Rows of the official GLUE files: (train, dev); MNLI's dev is matched 9,815 + mismatched 9,832.
OFFICIAL_ROWS = {
    "mnli": (392_702, 19_647), "sst2": (67_349, 872), "cola": (8_551, 1_043), "qqp": (363_846, 40_430),
    "qnli": (104_743, 5_463), "rte": (2_490, 277), "mrpc": (3_668, 408), "stsb": (5_749, 1_500),
}
# A task is learned when its best method reaches the majority class + LEARNED_MARGIN points, except
# where the constant predictor scores 0 by definition and a fixed bar is set instead.
LEARNED_MARGIN = 5.0
FIXED_THRESHOLDS = {"cola": 20.0, "stsb": 70.0}
MAJORITY_KEY = "majority_baseline"  # metrics.json: {<metric>: score of always predicting the majority class}
COMPARED = ("lora", "adalora")  # SaLoRA is compared with these
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
SAMPLED_MARK = "§"
NOT_LEARNED_MARK = "‡"
CURVES_DIR = "curves"


def learned_threshold(task: str, majority: float | None) -> float | None:
    """The main-metric score at which `task` (short or glue/ name) counts as learned; None when the
    majority-class score it rests on is unknown."""
    short = task.removeprefix("glue/")
    if short in FIXED_THRESHOLDS:
        return FIXED_THRESHOLDS[short]
    return None if majority is None else majority + LEARNED_MARGIN


def task_label(task: str) -> str:
    short = task.removeprefix("glue/")
    return GLUE_LABELS.get(short, short)


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def _interval_text(ci: tuple[float, float] | None) -> str:
    return "—" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


# --------------------------------------------------------------------------- rows of data
@dataclass(frozen=True)
class DataRows:
    """How many rows a task's runs trained and were scored on, against the official GLUE files.
    Counts are the distinct values over the runs (usually one); None where a run recorded none."""

    task: str  # short name
    train: tuple[int | None, ...]
    dev: tuple[int | None, ...]

    @property
    def official(self) -> tuple[int, int] | None:
        return OFFICIAL_ROWS.get(self.task)

    def _fewer(self, counts: tuple[int | None, ...], official: int) -> bool:
        known = [c for c in counts if c is not None]
        return bool(known) and max(known) < official

    @property
    def sampled_train(self) -> bool:
        return self.official is not None and self._fewer(self.train, self.official[0])

    @property
    def sampled_dev(self) -> bool:
        return self.official is not None and self._fewer(self.dev, self.official[1])

    @property
    def sampled(self) -> bool:
        return self.sampled_train or self.sampled_dev

    @staticmethod
    def _count(counts: tuple[int | None, ...]) -> str:
        known = sorted({c for c in counts if c is not None})
        if not known:
            return "not recorded"
        text = f"{known[0]:,}" if len(known) == 1 else f"{known[0]:,}–{known[-1]:,}"
        return text + (" (some runs: not recorded)" if None in counts else "")

    def train_text(self) -> str:
        official = f" of {self.official[0]:,}" if self.official else ""
        return self._count(self.train) + (official if any(c is not None for c in self.train) else "")

    def dev_text(self) -> str:
        official = f" of {self.official[1]:,}" if self.official else ""
        both = " (matched + mismatched)" if self.task == "mnli" else ""
        return self._count(self.dev) + (official + both if any(c is not None for c in self.dev) else "")


def _recorded_rows(run: RunRecord, key: str, cap_key: str, official: int | None) -> int | None:
    """metrics.json `key` (the rows the run used); else config.yaml train.`cap_key`, a cap on the
    official file (min of the two); else None."""
    value = run.raw.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    train = read_config(run.config_path).get("train")
    cap = train.get(cap_key) if isinstance(train, dict) else None
    if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
        return min(cap, official) if official else cap
    return None


def data_rows(task: str, runs: Iterable[RunRecord]) -> DataRows:
    official = OFFICIAL_ROWS.get(task)
    runs = list(runs)
    train = {_recorded_rows(r, "train_examples", "max_train_samples", official and official[0]) for r in runs}
    dev = {_recorded_rows(r, "eval_examples", "max_eval_samples", official and official[1]) for r in runs}
    order = lambda c: (c is None, c or 0)  # noqa: E731
    return DataRows(task, tuple(sorted(train, key=order)), tuple(sorted(dev, key=order)))


# ------------------------------------------------------------------------- majority class
_MAJORITY_CACHE: dict[tuple, float | None] = {}


def majority_scores(runs: Iterable[RunRecord]) -> dict[str, float]:
    """task -> the main metric (%) of always predicting the most common class of the dev split the
    task's runs were scored on (a regression task: predicting the mean score). A run's recorded
    `majority_baseline` wins; otherwise the dev labels are read through the task's loader with the
    first run's config (data_dir, task options, eval subset), cached per task and data. GLUE tasks
    only; a task whose data cannot be read here (or lives on the hub) is left out."""
    runs = [r for r in runs if r.family == "glue"]
    out: dict[str, float] = {}
    for run in runs:
        recorded = run.raw.get(MAJORITY_KEY)
        value = recorded.get(run.main_metric) if isinstance(recorded, dict) else None
        if run.task not in out and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[run.task] = float(value)
    for run in runs:
        if run.task not in out:
            score = _majority_from_dev(run)
            if score is not None:
                out[run.task] = score
    return out


def _majority_from_dev(run: RunRecord) -> float | None:
    from salora_cli.core import run_dir as rd
    from salora_cli.core.errors import SaloraError

    try:
        cfg = rd.load_config(run.path)
    except (SaloraError, OSError):
        return None
    if not cfg.data_dir:  # the hub: not fetched just for a report
        return None
    cap = cfg.train.max_eval_samples
    key = (cfg.task, os.path.abspath(str(cfg.data_dir)), json.dumps(cfg.task_options, sort_keys=True, default=str),
           cap, cfg.train.seed if cap else None)
    if key not in _MAJORITY_CACHE:
        _MAJORITY_CACHE[key] = _constant_predictor_score(cfg)
    return _MAJORITY_CACHE[key]


def _constant_predictor_score(cfg) -> float | None:
    """The best main-metric score of one prediction made for every dev example."""
    import tasks
    from salora_cli.core.errors import SaloraError
    from salora_cli.run.evaluation import eval_examples

    try:
        task = tasks.get(cfg.task).configure(**cfg.task_options)
        examples = eval_examples(cfg, task)
    except (SaloraError, OSError, KeyError, ValueError):
        return None
    if not examples or not hasattr(task, "compute_metrics"):
        return None
    labels = [ex["label"] for ex in examples]
    subsets = [ex.get("subset") for ex in examples]
    candidates = [statistics.fmean(labels)] if getattr(task, "is_regression", False) else sorted(set(labels))
    scores = [task.compute_metrics(labels, [c] * len(labels), subsets).get(task.main_metric) for c in candidates]
    scores = [s for s in scores if s is not None]
    return max(scores) if scores else None


# ------------------------------------------------------------------------------- verdicts
def stratified_bootstrap(groups: Sequence[Sequence[float]], resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean over groups of each group's mean, resampling the values
    within each group with replacement (the group sizes kept), from numpy's default_rng(seed)."""
    import numpy as np

    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("every group needs at least one value")
    rng = np.random.default_rng(seed)
    per_group = []
    for group in groups:
        values = np.asarray(group, dtype=float)
        picks = rng.integers(0, len(values), size=(resamples, len(values)))
        per_group.append(values[picks].mean(axis=1))
    statistic = np.mean(per_group, axis=0)
    lo, hi = np.quantile(statistic, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class OverallVerdict:
    """SaLoRA − `other` over the learned tasks: the mean over tasks of each task's mean paired
    difference, with its stratified-bootstrap interval."""

    other: str
    tasks: tuple[str, ...]  # the tasks that entered, in the table's order
    diffs: tuple[tuple[float, ...], ...]  # each task's paired differences
    left_out: tuple[str, ...]  # "<task> (why)"
    no_runs: bool = False  # `other` ran on no task

    @property
    def n_pairs(self) -> int:
        return sum(len(d) for d in self.diffs)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(statistics.fmean(d) for d in self.diffs) if self.diffs else None

    @cached_property
    def interval(self) -> tuple[float, float] | None:
        return stratified_bootstrap(self.diffs) if self.diffs else None

    @property
    def verdict(self) -> str | None:
        return verdict_of(self.interval)

    def line(self) -> str:
        if self.no_runs:
            return f"SaLoRA − {method_name(self.other)}: no {method_name(self.other)} runs."
        what = f"SaLoRA − {method_name(self.other)} over the learned tasks"
        left = f" Left out: {', '.join(self.left_out)}." if self.left_out else ""
        if not self.diffs:
            return f"{what}: no verdict (no learned task with two or more seed pairs).{left}"
        per_task = ", ".join(f"{task_label(t)} {len(d)}" for t, d in zip(self.tasks, self.diffs))
        return (f"{what}: {_signed(self.mean)} points (mean over {len(self.tasks)} task(s) of the per-task mean "
                f"paired difference; {self.n_pairs} (task, seed) pairs: {per_task}), 95 % interval "
                f"{_interval_text(self.interval)} (stratified bootstrap over seeds within each task): "
                f"**{self.verdict}**.{left}")


@dataclass(frozen=True)
class TaskStatus:
    """Whether a task was learned: its best method's main metric against the learned threshold."""

    task: str
    majority: float | None
    best_method: str | None
    best_score: float | None

    @property
    def threshold(self) -> float | None:
        return learned_threshold(self.task, self.majority)

    @property
    def learned(self) -> bool | None:
        if self.best_score is None or self.threshold is None:
            return None
        return self.best_score >= self.threshold


# ------------------------------------------------------------------------------- overview
@dataclass
class GlueOverview:
    """The eight-task table of one model at one budget (with the budget-free methods)."""

    model: str
    budget: int | None
    rows: dict[tuple[str, str], MetricsRow]  # (short task, method)
    majority: dict[str, float]  # short task -> majority-class main-metric score
    data: dict[str, DataRows]  # short task -> rows used
    method_labels: dict[str, str]
    multi_model: bool = False

    # ------------------------------------------------------------------ layout
    @property
    def methods(self) -> list[str]:
        present = {m for _, m in self.rows}
        return [m for m in PAPER_METHODS if m in present] + sorted(present - set(PAPER_METHODS))

    @property
    def tasks_run(self) -> list[str]:
        return [t for t in PAPER_TASKS if any(task == t for task, _ in self.rows)]

    @property
    def figure_name(self) -> str:
        return f"glue-{self.model}.png" if self.multi_model else "glue.png"

    def curve_name(self, task: str) -> str:
        return f"{CURVES_DIR}/{task}-{self.model}.png" if self.multi_model else f"{CURVES_DIR}/{task}.png"

    def main_metric(self, task: str) -> str:
        return OFFICIAL_METRICS[task][0]

    def scores(self, task: str, method: str) -> list[float]:
        row = self.rows.get((task, method))
        main = self.main_metric(task)
        return [r.best[main] for r in row.runs if main in r.best] if row else []

    def mean(self, task: str, method: str) -> float | None:
        values = self.scores(task, method)
        return statistics.fmean(values) if values else None

    def status(self, task: str) -> TaskStatus:
        means = {m: v for m in self.methods if (v := self.mean(task, m)) is not None}
        best = max(means, key=means.get) if means else None
        return TaskStatus(task, self.majority.get(task), best, means.get(best))

    @property
    def not_learned(self) -> list[str]:
        return [t for t in self.tasks_run if self.status(t).learned is False]

    def paired(self, task: str, other: str) -> PairedDifference | None:
        return paired_difference(self.rows.get((task, "salora")), self.rows.get((task, other)))

    def overall(self, other: str) -> OverallVerdict:
        tasks, diffs, left_out = [], [], []
        for task in self.tasks_run:
            d = self.paired(task, other)
            learned = self.status(task).learned
            why = ("not learned" if learned is False else "learned unknown: no majority-class score"
                   if learned is None else "no seed pair" if d is None else
                   "one seed pair" if d.n < 2 else None)
            if why:
                left_out.append(f"{task_label(task)} ({why})")
            else:
                tasks.append(task)
                diffs.append(d.diffs)
        return OverallVerdict(other, tuple(tasks), tuple(diffs), tuple(left_out),
                              no_runs=other not in self.methods)

    def average(self, method: str) -> float | None:
        """The paper's average: the mean of the eight main metrics, only with all eight."""
        means = [self.mean(t, method) for t in PAPER_TASKS]
        return statistics.fmean(means) if all(m is not None for m in means) else None

    # ----------------------------------------------------------------- markdown
    def _task_header(self, task: str) -> str:
        marks = (SAMPLED_MARK if task in self.data and self.data[task].sampled else "") + \
                (NOT_LEARNED_MARK if task in self.not_learned else "")
        return f"{task_label(task)}{marks} " + " / ".join(metric_label(m) for m in OFFICIAL_METRICS[task])

    def _cell(self, task: str, method: str) -> str:
        row = self.rows.get((task, method))
        if row is None:
            return "—"
        parts = [f"{row.best[m].mean:.2f}" if m in row.best else "—" for m in OFFICIAL_METRICS[task]]
        return " / ".join(parts) + row.mark("best")

    def _params(self, method: str) -> str:
        rows = [r for (_, m), r in self.rows.items() if m == method]
        start = [r.params_initial for r in rows if r.params_initial is not None]
        end = [r.params_final for r in rows if r.params_final is not None]
        if not end:
            return "?"
        a, b = _count_text(statistics.fmean(start)) if start else "?", _count_text(statistics.fmean(end))
        return b if a == b else f"{a} → {b}"

    def _seeds(self, method: str) -> str:
        ns = sorted({r.n for (_, m), r in self.rows.items() if m == method})
        return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"

    def table(self) -> _Section:
        with_average = [m for m in self.methods if self.average(m) is not None]
        headers = ["Method", "Params", "Seeds"] + [self._task_header(t) for t in PAPER_TASKS]
        headers += ["Avg"] if with_average else []
        section = _Section(title="", headers=headers, right=[False, True, True] + [True] * (len(headers) - 3))
        for method in self.methods:
            cells = [method_name(method) + self.method_labels.get(method, ""), self._params(method),
                     self._seeds(method)] + [self._cell(t, method) for t in PAPER_TASKS]
            if with_average:
                avg = self.average(method)
                cells.append("—" if avg is None else f"{avg:.2f}")
            section.rows.append(cells)
        return section

    def _table_notes(self) -> list[str]:
        mains = ", ".join(f"{task_label(t)} {metric_label(self.main_metric(t))}" for t in PAPER_TASKS)
        missing = [task_label(t) for t in PAPER_TASKS if t not in self.tasks_run]
        notes = ["Each cell: the mean over the seeds at the best dev checkpoint of the task's official metrics "
                 "(main metric first); *Seeds*: seeds per task; *Params*: trainable parameters at the start → end "
                 "of training, mean over tasks and seeds (the classifier head differs by task; SaLoRA removes "
                 "components, AdaLoRA masks them and keeps the count)."]
        average = (f"*Avg* (the papers' average column): the mean over the eight tasks of each task's main metric "
                   f"({mains}; tasks/metrics.py GLUE_MAIN_METRIC), only for a method with all eight tasks")
        if not any(self.average(m) is not None for m in self.methods):
            average += (f"; no method has all eight yet, so the column is left out"
                        + (f" (no runs: {', '.join(missing)})" if missing else ""))
        notes.append(average + ".")
        notes.append("WNLI is not in the table: GLUE averages in the papers leave it out (its train and dev sets "
                     "share sentences with flipped labels; most systems score its majority class).")
        sampled = [t for t in self.tasks_run if t in self.data and self.data[t].sampled]
        if sampled:
            notes.append(f"{SAMPLED_MARK} sampled: trained and/or scored on fewer rows than the official GLUE files "
                         "hold — " + "; ".join(f"{task_label(t)}: train {self.data[t].train_text()}, dev "
                                                f"{self.data[t].dev_text()}" for t in sampled) + ".")
        if self.not_learned:
            notes.append(f"{NOT_LEARNED_MARK} not learned: no method reaches the learned threshold (below); "
                         "learning curves: " + ", ".join(f"[{task_label(t)}]({self.curve_name(t)})"
                                                         for t in self.not_learned) + ".")
        if any(r.mark("best") for r in self.rows.values()):
            notes.append(DEGENERATE_FOOTNOTE + ".")
        return notes

    def learned_table(self) -> _Section:
        section = _Section(title="", headers=["Task", "Main metric", "Majority class", "Learned at", "Best method",
                                              "Learned", "Train rows", "Dev rows"],
                           right=[False, False, True, True, False, False, True, True])
        for task in PAPER_TASKS:
            if task not in self.tasks_run:
                section.rows.append([task_label(task), metric_label(self.main_metric(task))] + ["—"] * 3 +
                                    ["not run", "—", "—"])
                continue
            s, rows = self.status(task), self.data.get(task)
            fixed = " (fixed)" if task in FIXED_THRESHOLDS else ""
            learned = {True: "yes", False: f"**no** ([curves]({self.curve_name(task)}))", None: "unknown"}[s.learned]
            section.rows.append([
                task_label(task) + (f" {SAMPLED_MARK}" if rows and rows.sampled else ""),
                metric_label(self.main_metric(task)),
                "—" if s.majority is None else f"{s.majority:.2f}",
                "—" if s.threshold is None else f"{s.threshold:.2f}{fixed}",
                f"{method_name(s.best_method)} {s.best_score:.2f}",
                learned, rows.train_text() if rows else "—", rows.dev_text() if rows else "—"])
        return section

    def verdict_table(self) -> _Section:
        headers = ["Task", "SaLoRA"]
        for other in COMPARED:
            name = method_name(other)
            headers += [name, f"SaLoRA − {name} [95 %]", "seeds ahead", "verdict"]
        section = _Section(title="", headers=headers, right=[False, True] + [True, True, True, False] * len(COMPARED))
        for task in self.tasks_run:
            sal = self.mean(task, "salora")
            cells = [task_label(task), "—" if sal is None else f"{sal:.2f}"]
            learned = self.status(task).learned
            for other in COMPARED:
                mean, d = self.mean(task, other), self.paired(task, other)
                cells.append("—" if mean is None else f"{mean:.2f}")
                if d is None:
                    cells += ["—", "—", "—"]
                    continue
                verdict = d.verdict or "— (one seed pair)"
                weak = self.rows[(task, "salora")].degenerate_seeds or self.rows[(task, other)].degenerate_seeds
                verdict += (" (not learned: no evidence either way)" if learned is False else
                            f" (a degenerate checkpoint among the seeds {DAGGER})" if weak else "")
                ci = d.interval()
                shown = _signed(d.mean) + ("" if ci is None else f" {_interval_text(ci)}")
                cells += [shown, f"{d.wins}/{d.n}", verdict]
            section.rows.append(cells)
        return section

    def verdict_lines(self) -> list[str]:
        """The verdicts in a few lines (results/README.md states them): per task, then overall."""
        lines = []
        for other in COMPARED:
            per_task = []
            for task in self.tasks_run:
                d = self.paired(task, other)
                if d is not None:
                    verdict = d.verdict or "one seed pair"
                    learned = "" if self.status(task).learned is not False else ", not learned"
                    per_task.append(f"{task_label(task)} {verdict} ({_signed(d.mean)}{learned})")
            if per_task:
                lines.append(f"SaLoRA − {method_name(other)} per task: " + "; ".join(per_task) + ".")
            lines.append(self.overall(other).line())
        return lines

    def markdown(self, level: int = 2) -> str:
        h = "#" * level
        budget = f"budget {self.budget}" if self.budget is not None else "the runs"
        model = f", {self.model}" if self.multi_model else ""
        parts = [f"{h} GLUE at a glance ({budget}{model}): the papers' table",
                 f"A row per method, a column per task, as in the LoRA, AdaLoRA and SaLoRA papers: the adapter "
                 f"methods at {budget} and full fine-tuning and BitFit (no budget). "
                 f"Picture: [{self.figure_name}]({self.figure_name}).",
                 self.table().markdown(),
                 "\n".join(f"- {n}" for n in self._table_notes()),
                 f"{h}# Learned or not",
                 f"A task is learned when its best method's main metric reaches the majority class + "
                 f"{LEARNED_MARGIN:g} points (CoLA: MCC {FIXED_THRESHOLDS['cola']:g}, STS-B: Pearson "
                 f"{FIXED_THRESHOLDS['stsb']:g}: a constant prediction scores 0 on both). *Majority class*: the main "
                 f"metric of always predicting the dev split's most common class (`{MAJORITY_KEY}` in a run's "
                 "metrics.json where recorded, else computed from the dev labels the runs were scored on). A task "
                 "not learned stays in the table, marked, with its learning curves (dev main metric against step, "
                 "mean over seeds per method).",
                 self.learned_table().markdown(),
                 f"{h}# The verdict: SaLoRA against LoRA and AdaLoRA",
                 "Per task: the mean over seeds of SaLoRA − the other method, paired by seed (the seeds both ran), "
                 "its 95 % interval (paired t, n − 1 degrees of freedom), the seeds on which SaLoRA is ahead, and "
                 "the verdict: *ahead* (the interval lies above 0), *level* (it spans 0), *behind* (below 0).",
                 self.verdict_table().markdown(),
                 f"Overall, over every (task, seed) pair of the learned tasks with two or more pairs, in each task's "
                 f"main-metric points: the statistic is the mean over tasks of the per-task mean paired difference "
                 f"(each task weighs the same, whatever its seeds); its 95 % interval is the percentile interval of a "
                 f"stratified bootstrap that resamples the seed pairs with replacement within each task "
                 f"({BOOTSTRAP_RESAMPLES:,} resamples, numpy default_rng({BOOTSTRAP_SEED})). With 3-5 seeds per task "
                 f"a percentile bootstrap runs a little narrow (it has no n − 1 correction), so a verdict that rests "
                 f"on an interval edge near 0 is read with the per-task t intervals above.",
                 "\n".join(f"- {self.overall(other).line()}" for other in COMPARED)]
        return "\n\n".join(parts)


def build_glue_overviews(rows: Iterable[MetricsRow], majority: dict[str, float] | None = None,
                         budget: int | None = None, method_labels: dict[str, str] | None = None) -> list[GlueOverview]:
    """One overview per model from the GLUE rows of one budget's table (with the budget-free rows);
    `majority`: task (glue/ name) -> majority-class main-metric score."""
    rows = [r for r in rows if r.family == "glue" and r.task.removeprefix("glue/") in OFFICIAL_METRICS]
    models = sorted({r.model for r in rows})
    majority = {k.removeprefix("glue/"): v for k, v in (majority or {}).items()}
    out = []
    for model in models:
        mine = {(r.task.removeprefix("glue/"), r.method): r for r in rows if r.model == model}
        tasks = {t for t, _ in mine}
        data = {t: data_rows(t, [run for (task, _), r in mine.items() if task == t for run in r.runs]) for t in tasks}
        out.append(GlueOverview(model, budget, mine, {t: v for t, v in majority.items() if t in tasks}, data,
                                dict(method_labels or {}), multi_model=len(models) > 1))
    return out
