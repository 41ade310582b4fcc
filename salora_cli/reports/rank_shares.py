"""results/ranks/shares.md: where SaLoRA puts its learned rank, per task, averaged over seeds.

The per-task rank maps (ranks/<task>/) show one seed; a difference between two tasks' maps means
something only if it is larger than the spread between seeds of one task. This table gives each
role's and each layer's share of the total learned rank as mean ± sd over the seeds the tables
report, with the lr each task's SaLoRA ran at (chosen per task by the lr rule, so it differs).
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
             "as the task's.", ""]
    spreads: dict[str, list[float]] = defaultdict(list)
    for title, keys, names, share in (
            ("By role", roles, roles, lambda rep, k: rep.role_shares().get(k, 0.0)),
            ("By layer", layers, [f"layer {k}" for k in layers], lambda rep, k: rep.layer_shares().get(k, 0.0))):
        lines += [f"## {title}", "", "| Task | lr | Seeds | " + " | ".join(names) + " |",
                  "|---|---:|---:|" + "---:|" * len(names)]
        for task, reps in reports_by_task.items():
            cells = []
            for k in keys:
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


def write_for_grid(runs, out_md: Path) -> Path:
    """shares.md from a grid's reported runs: every SaLoRA seed of each task (one budget's runs)."""
    by_task: dict[str, list[RankReport]] = {}
    lrs: dict[str, float | None] = {}
    for run in sorted(runs, key=lambda r: (r.task, r.seed or 0)):
        if run.method == "salora":
            by_task.setdefault(run.task, []).append(build_rank_report(run.path))
            lrs[run.task] = run.lr
    atomic.write_text(out_md, rank_shares_markdown(by_task, lrs))
    return out_md
