"""Figures of the GLUE overview: results/glue.png (every method's mean with its interval per task,
beside SaLoRA's paired differences) and results/curves/<task>.png for a task no method learned.

Drawn with the helpers of reports.figures (explicit Agg canvas, atomic writes); this module imports
figures, never the other way round.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from salora_cli.reports.figures import _PALETTE, _new_figure, _save
from salora_cli.reports.glue_overview import (COMPARED, CURVES_DIR, NOT_LEARNED_MARK, PAPER_METHODS,
                                              SAMPLED_MARK, GlueOverview, method_name, task_label)
from salora_cli.reports.metrics_table import metric_label, t_interval

# tab10 without its green and red, which mark the verdicts
METHOD_COLORS = {"salora": _PALETTE[0], "lora": _PALETTE[1], "adalora": _PALETTE[4], "full": _PALETTE[5],
                 "bitfit": _PALETTE[9]}
VERDICT_COLORS = {"ahead": "#1a9850", "behind": "#d73027", "level": "#4d4d4d", None: "#999999"}
MAJORITY_STYLE = {"color": "#7f7f7f", "linestyle": ":", "linewidth": 1.2}
THRESHOLD_STYLE = {"color": "#c0392b", "linestyle": "--", "linewidth": 1.0, "alpha": 0.8}


def _color(method: str, index: int):
    return METHOD_COLORS.get(method, _PALETTE[(6 + index) % len(_PALETTE)])


def _title(ov: GlueOverview, task: str) -> str:
    rows = ov.data.get(task)
    marks = (f" {SAMPLED_MARK} sampled" if rows and rows.sampled else "") + \
            (f" {NOT_LEARNED_MARK} not learned" if task in ov.not_learned else "")
    return f"{task_label(task)} — dev {metric_label(ov.main_metric(task))}{marks}"


def glue_figure(ov: GlueOverview, out_png: str | os.PathLike) -> Path:
    """A row per task: left, each method's mean with its 95 % t interval over seeds (a single seed: a
    point), the seeds as faint dots, the majority class and the learned threshold; right, SaLoRA minus
    LoRA and minus AdaLoRA paired by seed, with the 95 % paired-t interval, coloured by verdict."""
    tasks = ov.tasks_run
    methods = [m for m in PAPER_METHODS if m in ov.methods] + [m for m in ov.methods if m not in PAPER_METHODS]
    fig = _new_figure(11.5, 1.0 + 0.27 * len(methods) * len(tasks) + 0.45 * len(tasks))
    axes = fig.subplots(len(tasks), 2, width_ratios=[1.7, 1], squeeze=False)
    budget = f"budget {ov.budget}" if ov.budget is not None else "all runs"
    fig.suptitle(f"GLUE dev, {ov.model}, {budget}: mean over seeds with 95 % interval (left); "
                 "SaLoRA − other, paired by seed (right)", fontsize=11, fontweight="bold")
    for i, task in enumerate(tasks):
        left, right = axes[i]
        for k, method in enumerate(methods):
            values = ov.scores(task, method)
            if not values:
                left.text(0.01, k, "not run", transform=left.get_yaxis_transform(), ha="left", va="center",
                          fontsize=7, color="#999999")
                continue
            mean, ci = statistics.fmean(values), t_interval(values)
            err = [[mean - ci[0]], [ci[1] - mean]] if ci else None
            left.scatter(values, [k] * len(values), s=12, color=_color(method, k), alpha=0.3, linewidths=0)
            left.errorbar([mean], [k], xerr=err, fmt="o", color=_color(method, k), capsize=3, markersize=5)
            left.annotate(f"{mean:.1f}" + (f" (n={len(values)})" if len(values) > 1 else " (1 seed)"),
                          (mean, k), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7)
        status = ov.status(task)
        if status.majority is not None:
            left.axvline(status.majority, **MAJORITY_STYLE)
        if status.threshold is not None:
            left.axvline(status.threshold, **THRESHOLD_STYLE)
        left.set_yticks(range(len(methods)), [method_name(m) for m in methods], fontsize=8)
        left.set_ylim(len(methods) - 0.4, -0.7)
        left.set_title(_title(ov, task), loc="left", fontsize=9, fontweight="bold")
        left.tick_params(axis="x", labelsize=8)
        left.grid(axis="x", alpha=0.3)

        right.axvline(0, color="black", linewidth=0.8)
        reach = 0.0  # the x range is symmetric about 0, so ahead is right and behind is left in every row
        for k, other in enumerate(COMPARED):
            d = ov.paired(task, other)
            if d is None:
                right.text(0, k, "no pairs", ha="center", va="center", fontsize=7, color="#999999")
                continue
            ci = d.interval()
            reach = max(reach, *(abs(x) for x in (*d.diffs, *(ci or ()))))
            color = VERDICT_COLORS.get(d.verdict, "#999999")
            right.scatter(d.diffs, [k] * d.n, s=12, color=color, alpha=0.3, linewidths=0)
            right.errorbar([d.mean], [k], xerr=[[d.mean - ci[0]], [ci[1] - d.mean]] if ci else None, fmt="D",
                           color=color, capsize=3, markersize=5)
            right.annotate(f"{d.mean:+.2f} {d.verdict or '(1 pair)'}", (d.mean, k), xytext=(0, 6),
                           textcoords="offset points", ha="center", fontsize=7, color=color)
        right.set_xlim(-1.3 * (reach or 1.0), 1.3 * (reach or 1.0))
        right.set_yticks(range(len(COMPARED)), [f"− {method_name(m)}" for m in COMPARED], fontsize=8)
        right.set_ylim(len(COMPARED) - 0.4, -0.8)
        right.tick_params(axis="x", labelsize=8)
        right.grid(axis="x", alpha=0.3)
        if i == len(tasks) - 1:
            left.set_xlabel("dev score (main metric, points)", fontsize=8)
            right.set_xlabel("SaLoRA − other (points)", fontsize=8)
    fig.legend(handles=_legend(), loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    return _save(fig, out_png)


def _legend() -> list:
    from matplotlib.lines import Line2D

    lines = [Line2D([], [], **MAJORITY_STYLE, label="majority class"),
             Line2D([], [], **THRESHOLD_STYLE, label="learned at (majority + 5; CoLA MCC 20, STS-B Pearson 70)")]
    return lines + [Line2D([], [], marker="D", linestyle="none", color=VERDICT_COLORS[v], label=f"SaLoRA {v}")
                    for v in ("ahead", "level", "behind")]


def _mean_curve(row, metric: str) -> tuple[list[int], list[float]]:
    """Dev `metric` against step, the mean over the seeds that evaluated at each step."""
    by_step: dict[int, list[float]] = {}
    for run in row.runs:
        for e in run.raw.get("evals") or []:
            if not isinstance(e, dict) or e.get("split", "dev") == "test":
                continue
            value, step = (e.get("metrics") or {}).get(metric), e.get("step")
            if isinstance(value, (int, float)) and isinstance(step, (int, float)):
                by_step.setdefault(int(step), []).append(float(value))
    steps = sorted(by_step)
    return steps, [statistics.fmean(by_step[s]) for s in steps]


def learning_curve(ov: GlueOverview, task: str, out_png: str | os.PathLike) -> Path:
    """Dev main metric against step per method (mean over seeds), with the majority class and the
    learned threshold: what a task no method learned looked like during training."""
    metric = ov.main_metric(task)
    fig = _new_figure(7.5, 4.4)
    ax = fig.subplots()
    for k, method in enumerate(ov.methods):
        row = ov.rows.get((task, method))
        steps, means = _mean_curve(row, metric) if row else ([], [])
        if steps:
            ax.plot(steps, means, marker="o", markersize=3.5, linewidth=1.5, color=_color(method, k),
                    label=f"{method_name(method)} (n={row.n})")
    status = ov.status(task)
    if status.majority is not None:
        ax.axhline(status.majority, **MAJORITY_STYLE, label=f"majority class {status.majority:.2f}")
    if status.threshold is not None:
        ax.axhline(status.threshold, **THRESHOLD_STYLE, label=f"learned at {status.threshold:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel(f"dev {metric_label(metric)} (mean over seeds)")
    ax.set_title(f"{_title(ov, task)}: learning curves", fontsize=10, fontweight="bold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, out_png)


def write_glue_figures(overviews: list[GlueOverview], results: str | os.PathLike) -> list[Path]:
    """glue.png (one per model) and a learning-curve figure per task not learned, under `results`;
    curve figures left from an earlier build (a task learned since) are removed."""
    results = Path(results)
    written = []
    for ov in overviews:
        if not ov.tasks_run:
            continue
        written.append(glue_figure(ov, results / ov.figure_name))
        written += [learning_curve(ov, task, results / ov.curve_name(task)) for task in ov.not_learned]
    curves = results / CURVES_DIR
    if curves.is_dir():
        for stale in set(curves.glob("*.png")) - set(written):
            stale.unlink()
        if not any(curves.iterdir()):
            curves.rmdir()
    return written
