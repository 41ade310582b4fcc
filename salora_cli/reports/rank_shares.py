"""results/ranks/shares.md: where SaLoRA puts its learned rank, per task, averaged over seeds.

The per-task rank maps (ranks/<task>/) show one seed; a difference between two tasks' maps means
something only if it is larger than the spread between seeds of one task. This table gives each
role's and each layer's share of the total learned rank as mean ± sd over the seeds the tables
report, with the lr each task's SaLoRA ran at (chosen per task by the lr rule, so it differs).
Because the lr differs by task, a last table takes the selection seed's run at every lr the rule tried:
across a row the lr moves and the task stays; down a column the task moves and the lr stays.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from salora_cli.core import atomic
from salora_cli.reports.rank_report import ROLES, RankReport, build_rank_report


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def rank_shares_markdown(reports_by_task: dict[str, Sequence[RankReport]], lrs: dict[str, float | None]) -> str:
    """Two tables (by role, by layer) of % of the total learned rank, mean ± sd over each task's seeds."""
    roles = [r for r in ROLES if any(r in rep.roles for reps in reports_by_task.values() for rep in reps)]
    layers = sorted({l for reps in reports_by_task.values() for rep in reps for l in rep.layers if l >= 0})
    lines = ["# Where SaLoRA puts its learned rank, per task", "",
             "Share of the total learned rank (%) held by each module role and each layer at the end of "
             "training, mean ± sd over the SaLoRA seeds the GLUE tables report (main budget). A uniform "
             f"spread is {100 / max(len(roles), 1):.1f} % per role and {100 / max(len(layers), 1):.1f} % per "
             "layer. Two tasks differ in a cell only where the gap is well beyond both sds. Each task's lr "
             "is the one its lr rule chose (results/selection.md), so a difference may be the lr's as well "
             "as the task's (the last table, where present, tells them apart).", ""]
    spreads: dict[str, list[float]] = defaultdict(list)
    for title, keys, names, share, has in (
            ("By role", roles, roles, lambda rep, k: rep.role_shares().get(k, 0.0), lambda rep: roles),
            ("By layer", layers, [f"layer {k}" for k in layers], lambda rep, k: rep.layer_shares().get(k, 0.0),
             lambda rep: rep.layers)):
        lines += [f"## {title}", "", "| Task | lr | Seeds | " + " | ".join(names) + " |",
                  "|---|---:|---:|" + "---:|" * len(names)]
        for task, reps in reports_by_task.items():
            cells = []
            present = {k for rep in reps for k in has(rep)}
            for k in keys:
                if k not in present:  # e.g. a model with fewer layers than another in the table (MiniLM 6, SmolLM2 30)
                    cells.append("—")
                    continue
                values = [100.0 * share(rep, k) for rep in reps]
                spreads[title].append(_spread(values))
                cells.append(_cell(values))
            lr = lrs.get(task)
            lines.append(f"| {task} | {'—' if lr is None else f'{lr:g}'} | {len(reps)} | " + " | ".join(cells) + " |")
        lines.append("")
    for title, values in spreads.items():
        if values:
            lines.append(f"- {title.lower()}: the median sd between seeds of one task is "
                         f"{statistics.median(values):.1f} points.")
    return "\n".join(lines) + "\n"


# The roles compared across lrs: attention scores (query, key) against the FFN.
SCORE_ROLES, FFN_ROLES = ("query", "key"), ("ffn_in", "ffn_out")


def lr_shares_markdown(by_task_lr: dict[str, dict[float, RankReport]]) -> str:
    """One row per task, one column per lr: the query + key share and the FFN share (%) of one seed's
    learned rank. Separates the lr's effect (along a row) from the task's (down a column)."""
    lrs = sorted({lr for runs in by_task_lr.values() for lr in runs})
    lines = ["## By lr (one seed per lr)", "",
             "The selection seed's run at every lr the lr rule tried (results/selection.md), so lr and task "
             "can be told apart: query + key share / FFN (ffn_in + ffn_out) share, % of the learned rank "
             f"(uniform: {100 * len(SCORE_ROLES) / len(ROLES):.1f} / {100 * len(FFN_ROLES) / len(ROLES):.1f}). "
             "One seed per cell: compare a gap with the sd between seeds in the tables above.", "",
             "| Task | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---:|" * len(lrs)]
    for task, runs in by_task_lr.items():
        cells = []
        for lr in lrs:
            if lr not in runs:
                cells.append("—")
                continue
            shares = runs[lr].role_shares()
            score, ffn = (100.0 * sum(shares.get(r, 0.0) for r in roles) for roles in (SCORE_ROLES, FFN_ROLES))
            cells.append(f"{score:.1f} / {ffn:.1f}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_for_grid(runs, out_md: Path, lr_grid_runs=()) -> Path:
    """shares.md from a grid's reported runs: every SaLoRA seed of each task (one budget's runs), then,
    from `lr_grid_runs` (the selection seed's SaLoRA run at every lr tried, same budget), the lr table."""
    by_task: dict[str, list[RankReport]] = {}
    lrs: dict[str, float | None] = {}
    for run in sorted(runs, key=lambda r: (r.task, r.seed or 0)):
        if run.method == "salora":
            by_task.setdefault(run.task, []).append(build_rank_report(run.path))
            lrs[run.task] = run.lr
    md = rank_shares_markdown(by_task, lrs)
    by_task_lr: dict[str, dict[float, RankReport]] = {}
    for run in sorted(lr_grid_runs, key=lambda r: (r.task, r.lr or 0.0)):
        if run.method == "salora" and run.lr is not None:
            by_task_lr.setdefault(run.task, {})[run.lr] = build_rank_report(run.path)
    if by_task_lr:
        md += "\n" + lr_shares_markdown(by_task_lr)
    atomic.write_text(out_md, md)
    return out_md
