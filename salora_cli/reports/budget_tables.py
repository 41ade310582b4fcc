"""Metric tables under a protocol with rank budgets: one table per budget (glue.md / glue.csv).

A budget's table holds the adapter runs at that budget (the caller passes only the runs that are
reported: under an lr grid, those at the chosen lr) and the budget-free runs (full fine-tuning,
BitFit), which repeat in every budget's table marked "(no budget)". Within a budget everything is
the usual metrics report, so its SaLoRA − LoRA row is paired by seed at equal final rank.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from salora_cli.core import atomic
from salora_cli.reports.glue_overview import (FIXED_THRESHOLDS, LEARNED_MARGIN, GlueOverview,
                                             build_glue_overviews, learned_threshold)
from salora_cli.reports.metrics_table import MetricsReport, build_metrics_report, metric_label, paired_difference
from salora_cli.reports.runs import RunRecord

__all__ = ["LEARNED_MARGIN", "BudgetTable", "BudgetTables", "build_budget_tables"]

NO_BUDGET = " (no budget)"


@dataclass
class BudgetTable:
    budget: int
    r_init: int
    report: MetricsReport


@dataclass
class BudgetTables:
    """One metrics report per budget, rendered as one Markdown file and one CSV."""

    tables: list[BudgetTable]
    lr_selected: bool  # whether an lr grid chose the adapter methods' lr (then selection.md exists)
    # task -> the main metric (%) of always predicting the most common class on the split reported;
    # shown beside the claim so a cell no method learned is read as such (absent where the data is unknown)
    majority: dict[str, float] = field(default_factory=dict)
    # the papers' eight-task table at the first budget (GLUE only; one per model)
    overviews: list[GlueOverview] = field(default_factory=list)

    def print(self, console: Console) -> None:
        for table in self.tables:
            console.rule(f"budget {table.budget}: average rank {table.budget} per matrix")
            table.report.print(console)

    def _intro(self) -> str:
        text = ("**One table per rank budget.** In budget *b*'s table SaLoRA and AdaLoRA start at rank "
                "*r_init* per matrix and end at an average rank of *b*, and LoRA runs at rank *b*: all three "
                "adapt the same modules and end with the same total rank. ")
        if self.lr_selected:
            text += ("Each adapter method's row holds only its runs at the learning rate chosen for that task "
                     "and budget (`selection.md`: the best seed-0 dev score over the lr grid, ties to the smaller "
                     "lr); that seed-0 run is one of the seeds in the mean, since the dev split is also the "
                     "split reported. ")
        return text + ("Full fine-tuning and BitFit have no rank budget: their rows, marked *(no budget)*, are "
                       "the same runs in every table. The *SaLoRA − LoRA* row of each summary pairs the two "
                       "methods by seed at that budget.")

    def to_markdown(self, relative_to: str | os.PathLike | None = None) -> str:
        parts = [self.tables[0].report.header_markdown()]
        parts += [overview.markdown() for overview in self.overviews]
        parts.append(self._intro())
        for t in self.tables:
            parts.append(f"## Budget {t.budget}: average rank {t.budget} per matrix\n\n"
                         f"SaLoRA and AdaLoRA from r_init {t.r_init} to an average rank of {t.budget}; "
                         f"LoRA at rank {t.budget}.")
            parts.append(t.report.body_markdown(relative_to, level=3).rstrip("\n"))
        claim = self.claim_markdown()
        if claim:
            parts.append(claim)
        return "\n\n".join(parts) + "\n"

    def claim_markdown(self) -> str:
        """Cell by cell: SaLoRA against LoRA at the same final rank, with the paired difference, its
        95 % interval over seeds, the seeds ahead and a verdict (ahead / level / behind); marked where either method's best
        checkpoint was a majority-class classifier, or where neither method's mean reaches the learned
        threshold (`LEARNED_MARGIN` points above the majority class; CoLA and STS-B a fixed bar), where
        the cell is little evidence."""
        lines = []
        shown = bool(self.majority)
        for t in self.tables:
            rows = {(r.task, r.model, r.method): r for r in t.report.rows}
            for (task, model, method), sal in rows.items():
                lora = rows.get((task, model, "lora"))
                if method != "salora" or lora is None or sal.best_main is None or lora.best_main is None:
                    continue
                d = paired_difference(sal, lora)
                verdict = (d.verdict if d else None) or "— (one seed)"
                weak = sal.degenerate_seeds or lora.degenerate_seeds
                majority = self.majority.get(task)
                threshold = learned_threshold(task, majority)
                unlearned = threshold is not None and max(sal.best_main.mean, lora.best_main.mean) < threshold
                bar = (f"reaches {metric_label(sal.main_metric)} {threshold:g}" if task.removeprefix("glue/")
                       in FIXED_THRESHOLDS else f"{LEARNED_MARGIN:g} points above the majority class")
                note = (" (a degenerate checkpoint among the seeds: no evidence either way)" if weak else
                        f" (neither method {bar}: not learned, little evidence either way)" if unlearned else "")
                cells = [str(t.budget), task, f"{sal.best_main.mean:.2f}", f"{lora.best_main.mean:.2f}"]
                if shown:
                    cells.append("—" if majority is None else f"{majority:.2f}")
                ci = d.interval() if d else None
                cells += [f"{d.mean:+.2f}", "—" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]",
                          f"{d.wins}/{d.n}"] if d else ["—", "—", "—"]
                lines.append("| " + " | ".join(cells + [verdict + note]) + " |")
        if not lines:
            return ""
        headers = ["Budget", "Task", "SaLoRA", "LoRA", *(["majority class"] if shown else []),
                   "paired Δ", "95 % interval", "seeds ahead", "verdict"]
        rule = ["---:", "---", "---:", "---:", *(["---:"] if shown else []), "---:", "---:", "---:", "---"]
        return ("## SaLoRA against LoRA at the same final rank\n\n"
                "Per task and budget: the mean over seeds of SaLoRA − LoRA paired by seed, its 95 % "
                "confidence interval (paired t, n − 1 degrees of freedom), the seeds on which SaLoRA is "
                "ahead, and the verdict: *ahead* (the interval lies above 0), *level* (it spans 0), "
                "*behind* (it lies below 0). Generated from the tables above."
                + (" *Majority class*: the main metric of always predicting the dev split's most common class."
                   if shown else "") + "\n\n"
                "| " + " | ".join(headers) + " |\n|" + "|".join(rule) + "|\n" + "\n".join(lines))

    @property
    def csv(self) -> str:
        """Each budget's CSV rows, with the budget, whether the row is budget-free, and its lr in front."""
        header: list[str] = ["budget", "budget_free", "lr"]
        rows: list[dict] = []
        for t in self.tables:
            lrs = {(r.task, r.method, r.model): _lrs(r.runs) for r in t.report.rows}
            for line in csv.DictReader(io.StringIO(t.report.csv)):
                header += [k for k in line if k not in header]
                key = (line["task"], line["method"], line["model"])
                line.update(budget=str(t.budget), lr=lrs.get(key, ""),
                            budget_free="yes" if line["method"] in t.report.method_labels else "")
                rows.append(line)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def write(self, folder: str | os.PathLike, stem: str) -> list[Path]:
        folder = Path(folder)
        md, csv_path = folder / f"{stem}.md", folder / f"{stem}.csv"
        atomic.write_text(md, self.to_markdown(relative_to=folder))
        atomic.write_text(csv_path, self.csv)
        return [md, csv_path]


def _lrs(runs: list[RunRecord]) -> str:
    return ";".join(sorted({format(r.lr, ".10g") for r in runs if r.lr is not None}))


def build_budget_tables(runs: list[RunRecord], budget_of: dict[str, int | None], r_init: dict[int, int],
                        lr_selected: bool, majority: dict[str, float] | None = None) -> BudgetTables | None:
    """`budget_of`: run folder name -> its budget (None: budget-free); `r_init`: budget -> where
    SaLoRA/AdaLoRA start, in the profile's order; `majority`: task -> majority-class accuracy of the
    split reported, if known. None when no run has a budget."""
    tables = []
    for budget, start in r_init.items():
        chosen = [r for r in runs if budget_of.get(r.path.name, -1) in (budget, None)]
        if not any(budget_of.get(r.path.name) == budget for r in chosen):
            continue  # a table of budget-free rows alone would only repeat the others
        report = build_metrics_report(chosen)
        report.method_labels = {r.method: NO_BUDGET for r in chosen if budget_of.get(r.path.name) is None}
        tables.append(BudgetTable(budget, start, report))
    if not tables:
        return None
    first = tables[0]  # the main budget: the first listed that has runs
    overviews = build_glue_overviews(first.report.rows, majority, first.budget, first.report.method_labels)
    return BudgetTables(tables, lr_selected, majority or {}, overviews)
