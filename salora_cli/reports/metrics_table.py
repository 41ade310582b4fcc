"""Metric tables over runs: one row per task × method, mean ± std over seeds.

Presentation (stated in the Markdown header too):
- values are mean ± sample std (ddof = 1) over the n seeds; the std is blank for a single seed;
- the metric columns come from the best dev checkpoint (the evaluation with the highest main
  metric), the usual dev-set reporting; a "final" column gives the main metric at the last step;
- when every run of a table also made a held-out test evaluation (style tasks do), the other
  metric columns of that table are the test metrics instead, and say so in their header;
- GLUE tasks share one table, with a "GLUE avg" row per method that has all eight tasks (a
  partial mean is not comparable with published numbers) and a method × task summary;
- style tasks get their own table, and the Markdown shows a few sample rewrites per row.
"""
from __future__ import annotations

import csv
import io
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from salora_cli.core import atomic
from salora_cli.core.errors import SaloraError
from salora_cli.reports.runs import RunRecord, RunScan, best_in_common_window, read_generations
from salora_cli.reports.style_samples import N_PER_DIRECTION, MethodGenerations, StyleSamples, build_style_samples

# Same tasks and order as tasks.metrics.GLUE_MAIN_METRIC (not imported: it pulls in scikit-learn).
GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
GLUE_LABELS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B",
               "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE"}
METHOD_ORDER = ("base", "salora", "lora", "adalora", "full", "bitfit")  # base: a model without adapter
FAMILY_ORDER = ("glue", "style", "instruct", "transfer", "other")
FAMILY_TITLES = {"glue": "GLUE", "style": "Text style transfer",
                 "instruct": "Instruction tuning (held-out dev slice; neg_loss = -loss, higher is better)",
                 "transfer": "Zero-shot style transfer (task-agnostic: salora transfer)", "other": "Other tasks"}
# The zero-shot table's columns: (metric in metrics.json's test block, header)
TRANSFER_COLUMNS = (
    ("accuracy", "Acc"), ("bleu", "ref-BLEU"), ("self_bleu", "self-BLEU"), ("g_score", "G"),
    ("perplexity", "PPL rewrites"), ("perplexity_sources", "PPL sources"), ("perplexity_references", "PPL refs"),
    ("perplexity_ratio", "PPL rewrites / refs"), ("share_empty", "empty %"), ("share_echo", "echo %"),
    ("share_off_task", "off-task %"),
)
METRIC_LABELS = {
    "matthews_corrcoef": "MCC", "accuracy": "Acc", "accuracy_m": "Acc-m", "accuracy_mm": "Acc-mm",
    "f1": "F1", "pearson": "Pearson", "spearman": "Spearman", "bleu": "BLEU",
    "self_bleu": "self-BLEU", "perplexity": "PPL", "g_score": "G-score", "neg_loss": "-loss", "loss": "loss",
}
GLUE_AVERAGE_TASK = "glue/average"
DAGGER = "†"
DEGENERATE_FOOTNOTE = (f"{DAGGER} at least one seed's checkpoint predicted the same class for every example "
                       "(a degenerate, majority-class classifier): its score is no evidence of learning")


def degenerate(run: RunRecord, which: str = "best") -> bool:
    """Whether the run's `best` or `final` evaluation predicted a single class (see metrics.json)."""
    block = run.raw.get(which)
    return isinstance(block, dict) and block.get("degenerate") is True


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (None for a single value) and count of some values."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> "Stat | None":
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return None
        return cls(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))

    def text(self, digits: int = 2) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def _stat_text(stat: Stat | None) -> str:
    return stat.text() if stat else "—"


def _count_text(n: float | None) -> str:
    """Parameter counts the way papers print them (0.32M)."""
    if n is None:
        return "?"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def _method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _task_rank(task: str) -> tuple[int, str]:
    short = task.split("/", 1)[-1]
    return (GLUE_TASKS.index(short) if task.startswith("glue/") and short in GLUE_TASKS
            else len(GLUE_TASKS), task)


def _ordered_union(dicts: Iterable[dict]) -> list[str]:
    out: dict[str, None] = {}
    for d in dicts:
        out.update(dict.fromkeys(d))
    return list(out)


@dataclass
class MetricsRow:
    """One task × method (× model) cell of the report: statistics over its seeds."""

    family: str
    task: str
    method: str
    model: str
    main_metric: str
    runs: list[RunRecord]
    best: dict[str, Stat]
    final_main: Stat | None
    test: dict[str, Stat]
    params_initial: float | None
    params_final: float | None
    train_time_s: float | None

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def best_main(self) -> Stat | None:
        return self.best.get(self.main_metric)

    def mark(self, which: str) -> str:
        """The footnote mark for the best or final column when any seed's checkpoint was degenerate."""
        return DAGGER if any(degenerate(r, which) for r in self.runs) else ""

    @property
    def degenerate_seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs if degenerate(r, "best")]

    @classmethod
    def from_runs(cls, runs: list[RunRecord]) -> "MetricsRow":
        runs = sorted(runs, key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
        first = runs[0]

        def stats(attr: str) -> dict[str, Stat]:
            names = _ordered_union(getattr(r, attr) for r in runs)
            if first.main_metric in names:  # main metric first, the rest in run order
                names.remove(first.main_metric)
                names.insert(0, first.main_metric)
            return {m: s for m in names if (s := Stat.of(getattr(r, attr).get(m) for r in runs))}

        def mean(values: Iterable[float | None]) -> float | None:
            stat = Stat.of(values)
            return stat.mean if stat else None

        return cls(
            family=first.family, task=first.task, method=first.method, model=first.model,
            main_metric=first.main_metric, runs=runs, best=stats("best"),
            final_main=Stat.of(r.final.get(first.main_metric) for r in runs), test=stats("test"),
            params_initial=mean(r.params_initial for r in runs),
            params_final=mean(r.params_final for r in runs),
            train_time_s=mean(r.train_time_s for r in runs),
        )


@dataclass(frozen=True)
class PairedDifference:
    """SaLoRA minus LoRA on one task, paired by seed (same data order and head init)."""

    mean: float
    wins: int
    n: int
    diffs: tuple[float, ...] = ()

    def interval(self, level: float = 0.95) -> tuple[float, float] | None:
        """The paired-t confidence interval of the mean difference over seeds (Student's t with
        n − 1 degrees of freedom; None below 2 seeds). With 3-5 seeds a bootstrap would have too few
        distinct resamples to be trusted, so the t interval is the one reported."""
        return t_interval(self.diffs, level)

    @property
    def verdict(self) -> str | None:
        """ahead (the interval lies above 0), behind (below 0), level (it spans 0)."""
        return verdict_of(self.interval())


def t_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student's t confidence interval of the mean of `values` (n − 1 degrees of freedom); None
    below two values."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return None
    from scipy import stats

    mean = statistics.fmean(values)
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * statistics.stdev(values) / len(values) ** 0.5
    return mean - half, mean + half


def verdict_of(interval: tuple[float, float] | None) -> str | None:
    """ahead (the interval of a difference lies above 0), behind (below 0), level (it spans 0);
    None without an interval."""
    if interval is None:
        return None
    return "ahead" if interval[0] > 0 else "behind" if interval[1] < 0 else "level"


def paired_difference(a: MetricsRow | None, b: MetricsRow | None) -> PairedDifference | None:
    if a is None or b is None:
        return None
    scores_b = {r.seed: r.best.get(b.main_metric) for r in b.runs}
    diffs = [r.best[a.main_metric] - scores_b[r.seed] for r in a.runs
             if r.best.get(a.main_metric) is not None and scores_b.get(r.seed) is not None]
    if not diffs:
        return None
    return PairedDifference(statistics.fmean(diffs), sum(d > 0 for d in diffs), len(diffs), tuple(diffs))


@dataclass(frozen=True)
class GlueAverage:
    """Mean of the eight GLUE main metrics (each a mean over seeds) of one method."""

    method: str
    model: str
    best: float
    final: float | None


@dataclass
class _Section:
    """A table in a neutral form, rendered both as a Rich Table and as Markdown."""

    title: str
    headers: list[str]
    right: list[bool]  # right-align (numbers)
    rows: list[list[str]] = field(default_factory=list)
    breaks: set[int] = field(default_factory=set)  # a rule after these row indices
    caption: str = ""

    def rich(self) -> Table:
        table = Table(title=self.title, caption=self.caption or None, header_style="bold",
                      title_style="bold", caption_justify="left")
        for header, right in zip(self.headers, self.right):
            table.add_column(header, justify="right" if right else "left", no_wrap=right)
        for i, row in enumerate(self.rows):
            table.add_row(*row, end_section=i in self.breaks)
        return table

    def markdown(self) -> str:
        def cells(values: list[str]) -> str:
            return "| " + " | ".join(_md_escape(v) or " " for v in values) + " |"
        lines = [cells(self.headers), "|" + "|".join("---:" if r else "---" for r in self.right) + "|"]
        lines += [cells(row) for row in self.rows]
        return "\n".join(lines)


def _md_escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _clip(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class MetricsReport:
    """Rows per task × method, GLUE averages, style samples; rendered as Rich, Markdown and CSV."""

    rows: list[MetricsRow]
    glue_averages: list[GlueAverage]
    samples: list[StyleSamples]  # one per style task (and model), methods side by side
    notes: list[str] = field(default_factory=list)
    # shown after a method's name in the tables, e.g. " (no budget)" for full fine-tuning beside a budget
    method_labels: dict[str, str] = field(default_factory=dict)

    def _method_cell(self, method: str) -> str:
        return method + self.method_labels.get(method, "")

    # ----------------------------------------------------------------- layout
    @property
    def _multi_model(self) -> bool:
        return len({r.model for r in self.rows}) > 1

    def _family_rows(self, family: str) -> list[MetricsRow]:
        return [r for r in self.rows if r.family == family]

    @staticmethod
    def _uses_test(rows: list[MetricsRow]) -> bool:
        return all(r.test for r in rows)

    def _sections(self) -> list[_Section]:
        sections = []
        for family in FAMILY_ORDER:
            rows = self._family_rows(family)
            if not rows:
                continue
            if family == "transfer":
                sections.append(self._transfer_section(rows))
                continue
            sections.append(self._family_section(family, rows))
            if family == "glue":
                sections.append(self._glue_summary(rows))
        return sections

    def _family_section(self, family: str, rows: list[MetricsRow]) -> _Section:
        use_test = self._uses_test(rows)
        source = "test" if use_test else "best"
        # One column per metric when every row has the same metrics (style tasks); otherwise
        # (GLUE: MCC, accuracy, F1, correlations) a metric-name column and a free-text column.
        uniform = (len({r.main_metric for r in rows}) == 1
                   and len({tuple(getattr(r, source)) for r in rows}) == 1)

        lead = ["Task", "Method"] + (["Model"] if self._multi_model else []) + ["n"]
        right = [False] * (len(lead) - 1) + [True]
        if uniform:
            main = metric_label(rows[0].main_metric)
            extra = [m for m in getattr(rows[0], source) if use_test or m != rows[0].main_metric]
            headers = lead + [f"{main} (best)", f"{main} (final)"]
            headers += [f"test {metric_label(m)}" if use_test else metric_label(m) for m in extra]
            right += [True] * (2 + len(extra))
        else:
            extra = []
            headers = lead + ["Metric", "Best", "Final", "Test metrics" if use_test else "Other metrics (best)"]
            right += [False, True, True, False]
        headers += ["Params (init → final)", "Time (s)"]
        right += [False, True]

        title = FAMILY_TITLES[family] + (" — other metrics on the test split" if use_test else "")
        section = _Section(title=title, headers=headers, right=right)
        previous_task = None
        for row in rows:
            if previous_task is not None and row.task != previous_task:
                section.breaks.add(len(section.rows) - 1)
            previous_task = row.task
            cells = [row.task, self._method_cell(row.method)] + ([row.model] if self._multi_model else []) + [str(row.n)]
            stats = getattr(row, source)
            if uniform:
                cells += [_stat_text(row.best_main) + row.mark("best"), _stat_text(row.final_main) + row.mark("final")]
                cells += [_stat_text(stats.get(m)) for m in extra]
            else:
                others = [(m, s) for m, s in stats.items() if use_test or m != row.main_metric]
                cells += [metric_label(row.main_metric), _stat_text(row.best_main) + row.mark("best"),
                          _stat_text(row.final_main) + row.mark("final"),
                          "; ".join(f"{metric_label(m)} {s.text()}" for m, s in others) or "—"]
            cells += [f"{_count_text(row.params_initial)} → {_count_text(row.params_final)}",
                      "?" if row.train_time_s is None else f"{row.train_time_s:,.0f}"]
            section.rows.append(cells)
        if any(row.mark("best") or row.mark("final") for row in rows):
            section.caption = DEGENERATE_FOOTNOTE

        if family == "glue" and self.glue_averages:
            section.breaks.add(len(section.rows) - 1)
            for avg in self.glue_averages:
                cells = ["GLUE avg", self._method_cell(avg.method)] + ([avg.model] if self._multi_model else []) + [""]
                if uniform:
                    cells += [f"{avg.best:.2f}", "—" if avg.final is None else f"{avg.final:.2f}"]
                    cells += [""] * len(extra)
                else:
                    cells += ["main", f"{avg.best:.2f}", "—" if avg.final is None else f"{avg.final:.2f}", ""]
                cells += ["", ""]
                section.rows.append(cells)
        return section

    def _transfer_section(self, rows: list[MetricsRow]) -> _Section:
        """Zero-shot transfer: fixed columns on the test split, a row per task × method (× model)."""
        lead = ["Task", "Method"] + (["Model"] if self._multi_model else []) + ["n"]
        headers = lead + [h for _, h in TRANSFER_COLUMNS] + ["Gen s / 1k"]
        section = _Section(title=FAMILY_TITLES["transfer"], headers=headers,
                           right=[False] * (len(lead) - 1) + [True] * (len(headers) - len(lead) + 1),
                           caption=("test split; Acc by the runner's own classifier; PPL under the base LM without "
                                    "adapter, rewrites, sources and references all lower-cased running text; "
                                    "shares of empty rewrites, echoes of the source and off-task text (comments, "
                                    "refusals, loops; tasks/instruct/output_checks.py); Gen s / 1k: generation "
                                    "seconds per 1,000 sentences"))
        for i, row in enumerate(rows):
            if i and row.task != rows[i - 1].task:
                section.breaks.add(len(section.rows) - 1)
            speed = Stat.of(r.raw.get("test", {}).get("generate_s_per_1000") for r in row.runs)
            cells = [row.task, self._method_cell(row.method)] + ([row.model] if self._multi_model else []) + [str(row.n)]
            cells += [_stat_text(row.test.get(m)) for m, _ in TRANSFER_COLUMNS]
            section.rows.append(cells + [f"{speed.mean:,.0f}" if speed else "—"])
        return section

    def _glue_summary(self, rows: list[MetricsRow]) -> _Section:
        tasks = sorted({r.task for r in rows}, key=_task_rank)
        averages = {(a.method, a.model): a for a in self.glue_averages}
        lead = ["Method"] + (["Model"] if self._multi_model else [])
        headers = lead + [GLUE_LABELS.get(t.split("/", 1)[1], t) for t in tasks] + (["Avg"] if averages else [])
        right = [False] * len(lead) + [True] * (len(headers) - len(lead))
        mains = {t: next(r.main_metric for r in rows if r.task == t) for t in tasks}
        caption = "Main metric per task: " + ", ".join(
            f"{GLUE_LABELS.get(t.split('/', 1)[1], t)} {metric_label(mains[t])}" for t in tasks)
        if averages:
            caption += "; Avg only for methods with all eight GLUE tasks"
        section = _Section(title="GLUE summary — main metric at the best checkpoint, mean over seeds",
                           headers=headers, right=right, caption=caption)
        by_key = {(r.task, r.method, r.model): r for r in rows}
        for method, model in sorted({(r.method, r.model) for r in rows}, key=lambda k: (_method_rank(k[0]), k[1])):
            cells = [self._method_cell(method)] + ([model] if self._multi_model else [])
            for t in tasks:
                row = by_key.get((t, method, model))
                cells.append(f"{row.best_main.mean:.2f}{row.mark('best')}" if row and row.best_main else "—")
            if averages:
                avg = averages.get((method, model))
                cells.append(f"{avg.best:.2f}" if avg else "—")
            section.rows.append(cells)
        for model in sorted({r.model for r in rows}):
            diffs = [paired_difference(by_key.get((t, "salora", model)), by_key.get((t, "lora", model)))
                     for t in tasks]
            if not any(diffs):
                continue
            section.breaks.add(len(section.rows) - 1)
            cells = ["SaLoRA − LoRA"] + ([model] if self._multi_model else [])
            cells += [f"{d.mean:+.2f} ({d.wins}/{d.n})" if d else "—" for d in diffs]
            section.rows.append(cells + ([""] if averages else []))
        if any(r.mark("best") for r in rows):
            section.caption += "; " + DEGENERATE_FOOTNOTE
        if section.breaks:
            section.caption += ("; SaLoRA − LoRA: mean difference of the main metric over seeds run by "
                                "both, with how many of those seeds SaLoRA came out ahead")
        return section

    # -------------------------------------------------------------- renderers
    @property
    def tables(self) -> list[Table]:
        """Rich tables for the terminal: per family, plus the GLUE method × task summary."""
        return [s.rich() for s in self._sections()]

    def __rich__(self) -> Group:
        notes = [Text(f"note: {n}", style="dim") for n in self.notes]
        return Group(*self.tables, *notes)

    def print(self, console: Console | None = None) -> None:
        (console or Console()).print(self)

    def header_markdown(self) -> str:
        lines = [
            "# Results",
            "",
            "Each cell is the **mean ± sample standard deviation** (ddof = 1) over the *n* seeds; the std is "
            "left out when there is a single seed. Metrics are taken at the **best dev checkpoint** (the "
            "evaluation with the highest main metric — the usual dev-set reporting), chosen only among "
            "evaluations made at the final budget, so SaLoRA and AdaLoRA are reported with the rank they "
            "end with, never with an earlier, larger one; and, so that every method picks its best among "
            "as many evaluations, only among those from the step on where every run of the task (same "
            "model, steps and evaluation steps) had reached its final budget. The *final* column is "
            "the main metric at the last training step. Where every run of a table also has a held-out "
            "test evaluation, that table's other metric columns are the test metrics (marked *test*).",
            "",
            "Metrics are percentages (0–100) except perplexity (PPL, lower is better)"
            + (" and the instruction-tuning losses (mean nats per response token; -loss, its negation, is the "
               "main metric so that higher is better everywhere)" if self._family_rows("instruct") else "")
            + ". *Params* are the "
            "trainable parameters at the start → at the end of training (SaLoRA removes closed components, "
            "so its count shrinks; peft's AdaLoRA masks pruned components to zero but keeps them, so its "
            "count does not, although its active rank ends at the same budget); *Time* is the mean training wall-clock time in seconds. The GLUE average "
            "is the mean of the eight tasks' main metrics and appears only for methods that have all eight.",
        ]
        return "\n".join(lines)

    def to_markdown(self, relative_to: str | os.PathLike | None = None) -> str:
        """The full Markdown report; run-folder links are made relative to `relative_to` if given."""
        return self.header_markdown() + "\n\n" + self.body_markdown(relative_to)

    def body_markdown(self, relative_to: str | os.PathLike | None = None, level: int = 2) -> str:
        """Everything below the header, headings at `level` (3: nested under another report's heading)."""
        h = "#" * level
        parts = []
        for section in self._sections():
            block = f"{h} {section.title}\n\n{section.markdown()}"
            if section.caption:
                block += f"\n\n{section.caption}."
            parts.append(block)
        if self.samples:
            parts.append(self._samples_markdown(relative_to, level))
        parts.append(self._provenance_markdown(relative_to, level))
        if self.notes:
            parts.append(f"{h} Notes\n\n" + "\n".join(f"- {_md_escape(n)}" for n in self.notes))
        return "\n\n".join(parts) + "\n"

    @property
    def markdown(self) -> str:
        return self.to_markdown()

    def _samples_markdown(self, relative_to, level: int = 2) -> str:
        h = "#" * level
        out = [f"{h} Sample rewrites",
               f"Picked by a fixed rule that never looks at an output: for each task and direction, the "
               f"sources at {N_PER_DIRECTION} evenly spaced positions (0, n/{N_PER_DIRECTION}, "
               f"2n/{N_PER_DIRECTION}, …) of that direction's n test sources in file order, with every "
               f"method's rewrite of the same source side by side (the first seed of each). *Content* is what "
               f"the model was given: the source with its style markers deleted (zero-shot transfer: the "
               f"lower-cased source)."]
        for table in self.samples:
            title = f"{h}# {table.task}" + (f" · {table.model}" if self._multi_model else "")
            where = "; ".join(f"{m.method}: seed {m.seed}, {_link(m.path, relative_to)}"
                              + ("" if m.records else " (_no generations.jsonl in this run folder_)")
                              for m in table.methods)
            block = [title, where]
            if table.compared:
                writers = [m.method for m in table.methods if m.records]
                block.append(f"{' and '.join(writers)} wrote the identical rewrite for "
                             f"{table.identical:,} of the {table.compared:,} test sources they share.")
            for (src, tgt), rows in table.directions.items():
                n = table.direction_sizes[(src, tgt)]
                section = _Section(title="", headers=["#", "Source", "Content", "Reference",
                                                      *[m.method for m in table.methods]],
                                   right=[True] + [False] * (3 + len(table.methods)))
                for r in rows:
                    section.rows.append([str(r.position), _clip(r.source), _clip(r.content), _clip(r.reference),
                                         *["—" if g is None else _clip(g) for g in r.generations]])
                block.append(f"{h}## {table.task}: {src} → {tgt} ({len(rows)} of {n:,} sources)\n\n"
                             + section.markdown())
            out.append("\n\n".join(block))
        return "\n\n".join(out)

    def _provenance_markdown(self, relative_to, level: int = 2) -> str:
        section = _Section(title="", headers=["Task", "Method", "Seed", "Run folder", "Config", "Command"],
                           right=[False, False, True, False, False, False])
        for row in self.rows:
            for run in row.runs:
                section.rows.append([row.task, row.method, "" if run.seed is None else str(run.seed),
                                     _link(run.path, relative_to), _link(run.config_path, relative_to, "config"),
                                     _link(run.command_path, relative_to, "command")])
        n = sum(len(r.runs) for r in self.rows)
        return (f"{'#' * level} Runs\n\n<details><summary>{n} run folder(s): configuration and command line of "
                f"each</summary>\n\n{section.markdown()}\n\n</details>")

    @property
    def csv(self) -> str:
        """One CSV row per task × method (+ one per GLUE average); best-checkpoint metrics as
        `<metric>_mean` / `<metric>_std`, test metrics as `test_<metric>_mean` / `_std`."""
        best_names = _ordered_union(r.best for r in self.rows)
        test_names = _ordered_union(r.test for r in self.rows)
        header = ["family", "task", "method", "model", "n_seeds", "seeds", "main_metric",
                  "main_best_mean", "main_best_std", "main_final_mean", "main_final_std"]
        header += [f"{m}_{k}" for m in best_names for k in ("mean", "std")]
        header += [f"test_{m}_{k}" for m in test_names for k in ("mean", "std")]
        header += ["params_initial_mean", "params_final_mean", "train_time_s_mean", "degenerate_seeds"]

        def num(x: float | None) -> str:
            return "" if x is None else format(x, ".10g")

        def pair(stat: Stat | None) -> list[str]:
            return [num(stat.mean), num(stat.std)] if stat else ["", ""]

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for row in self.rows:
            line = [row.family, row.task, row.method, row.model, str(row.n),
                    ";".join("" if s is None else str(s) for s in row.seeds), row.main_metric]
            line += pair(row.best_main) + pair(row.final_main)
            line += [v for m in best_names for v in pair(row.best.get(m))]
            line += [v for m in test_names for v in pair(row.test.get(m))]
            line += [num(row.params_initial), num(row.params_final), num(row.train_time_s),
                     ";".join("" if s is None else str(s) for s in row.degenerate_seeds)]
            writer.writerow(line)
        for avg in self.glue_averages:
            line = ["glue", GLUE_AVERAGE_TASK, avg.method, avg.model, "", "", "glue_average",
                    num(avg.best), "", num(avg.final), ""]
            line += [""] * (len(header) - len(line))
            writer.writerow(line)
        return buf.getvalue()

    def write(self, folder: str | os.PathLike, stem: str = "results") -> list[Path]:
        """Write `<stem>.md` and `<stem>.csv` into `folder` (atomically); returns the paths."""
        folder = Path(folder)
        md, csv_path = folder / f"{stem}.md", folder / f"{stem}.csv"
        atomic.write_text(md, self.to_markdown(relative_to=folder))
        atomic.write_text(csv_path, self.csv)
        return [md, csv_path]


def _link(path: Path, relative_to, text: str | None = None) -> str:
    target = Path(path)
    if relative_to is not None:
        try:
            target = Path(os.path.relpath(Path(path).resolve(), Path(relative_to).resolve()))
        except ValueError:  # another drive on Windows
            target = Path(path)
    shown = text or target.as_posix()
    return f"[{shown}]({target.as_posix()})" if text else f"`{shown}`"


def _degenerate_note(run: RunRecord) -> str:
    predicted = run.raw["best"].get("predicted_class")
    return (f"{run.task} · {run.method} · seed {run.seed}: the best checkpoint predicts class {predicted!r} for "
            f"every dev example ({run.path})")


def build_metrics_report(runs: Iterable[RunRecord] | RunScan) -> MetricsReport:
    """Group runs by task × method (× model) and compute mean ± std over seeds.

    Pass the RunScan from `find_runs` to carry its skip notes into the report.
    """
    notes = list(runs.notes) if isinstance(runs, RunScan) else []
    runs = best_in_common_window(runs)
    if not runs:
        raise SaloraError("no runs to report")
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.task, run.method, run.model), []).append(run)

    rows = []
    for key in sorted(groups, key=lambda k: (FAMILY_ORDER.index(groups[k][0].family), _task_rank(k[0]),
                                             _method_rank(k[1]), k[2])):
        group = groups[key]
        if len({r.main_metric for r in group}) > 1:
            notes.append(f"{key[0]} · {key[1]}: runs disagree on the main metric "
                         f"({', '.join(sorted({r.main_metric for r in group}))}); using {group[0].main_metric}")
        seeds = [r.seed for r in group]
        if len(set(seeds)) < len(seeds):  # e.g. a reproduce folder with an lr grid or two budgets
            notes.append(f"{key[0]} · {key[1]}: a seed appears more than once (runs at several learning rates "
                         "or budgets), so this row's mean mixes them; results/glue.md keeps them apart")
        rows.append(MetricsRow.from_runs(group))

    notes += [_degenerate_note(run) for run in runs if degenerate(run, "best")]

    averages = []
    for method, model in sorted({(r.method, r.model) for r in rows if r.family == "glue"},
                                key=lambda k: (_method_rank(k[0]), k[1])):
        per_task = {r.task.split("/", 1)[1]: r for r in rows
                    if r.family == "glue" and r.method == method and r.model == model}
        if not all(t in per_task and per_task[t].best_main for t in GLUE_TASKS):
            continue
        finals = [per_task[t].final_main for t in GLUE_TASKS]
        averages.append(GlueAverage(
            method=method, model=model,
            best=statistics.fmean(per_task[t].best_main.mean for t in GLUE_TASKS),
            final=statistics.fmean(f.mean for f in finals) if all(finals) else None,
        ))

    samples = []
    style_groups: dict[tuple[str, str], list[MetricsRow]] = {}
    for row in rows:
        if row.family in ("style", "transfer"):
            style_groups.setdefault((row.task, row.model), []).append(row)
    for (task, model), group in style_groups.items():
        methods = [MethodGenerations(method=r.method, seed=r.runs[0].seed, path=r.runs[0].generations_path,
                                     records=read_generations(r.runs[0].generations_path)) for r in group]
        samples.append(build_style_samples(task, model, methods))
    return MetricsReport(rows=rows, glue_averages=averages, samples=samples, notes=notes)
