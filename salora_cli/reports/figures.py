"""Rank figures (the only matplotlib code of the reports).

Figures are built on `matplotlib.figure.Figure` with an explicit Agg canvas instead of pyplot, so
no global backend is switched, nothing needs a display and no figure leaks into pyplot's registry
(a reproduce run draws hundreds of them). Every PNG goes through atomic_path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure

from salora_cli import atomic

if TYPE_CHECKING:  # avoid an import cycle; only used for annotations
    from salora_cli.reports.rank_report import RankReport

_PALETTE = colormaps["tab10"].colors
ROLE_COLORS = {role: _PALETTE[i] for i, role in
               enumerate(("query", "key", "value", "attn_out", "ffn_in", "ffn_out"))}
HEATMAP_CMAP = "viridis"  # perceptually uniform and colour-blind safe
DPI = 150


def role_color(role: str, index: int = 0):
    return ROLE_COLORS.get(role, _PALETTE[(6 + index) % len(_PALETTE)])


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: str | os.PathLike) -> Path:
    out_png = Path(out_png)
    with atomic.atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return out_png


def _ink_for(rgba) -> str:
    """Black or white text, whichever reads better on a cell of colour `rgba`."""
    r, g, b = to_rgba(rgba)[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def rank_heatmap(report: "RankReport", out_png: str | os.PathLike) -> Path:
    """Layer × role heatmap: colour is the learned rank per matrix (0 … r_init), the annotation the
    cell's rank (the sum where a cell holds several matrices); totals on the right and bottom."""
    layers, roles = report.layers, report.roles
    n_rows, n_cols = len(layers), len(roles)
    per_matrix = np.full((n_rows, n_cols), np.nan)
    for i, layer in enumerate(layers):
        for j, role in enumerate(roles):
            if (layer, role) in report.cells:
                per_matrix[i, j] = report.cells[layer, role] / report.counts[layer, role]

    fig = _new_figure(max(6.0, 1.05 * n_cols + 3.4), max(3.6, 0.36 * n_rows + 2.3))
    ax = fig.add_subplot()
    cmap = colormaps[HEATMAP_CMAP].with_extremes(bad="#ececec")
    vmax = max(report.r_init or 0, float(np.nanmax(per_matrix)) if np.isfinite(per_matrix).any() else 0, 1)
    norm = Normalize(vmin=0, vmax=vmax)
    image = ax.imshow(np.ma.masked_invalid(per_matrix), cmap=cmap, norm=norm, aspect="auto",
                      interpolation="nearest")

    font = 9 if n_rows <= 24 else 7
    for i, layer in enumerate(layers):
        for j, role in enumerate(roles):
            if (layer, role) not in report.cells:
                ax.text(j, i, "–", ha="center", va="center", color="#9a9a9a", fontsize=font)
                continue
            ax.text(j, i, str(report.cells[layer, role]), ha="center", va="center", fontsize=font,
                    color=_ink_for(cmap(norm(per_matrix[i, j]))), fontweight="bold")

    col_totals, row_totals = report.col_totals, report.row_totals
    ax.set_xticks(range(n_cols), [f"{report.role_label(r)}\nΣ {col_totals[r]}" for r in roles])
    ax.set_yticks(range(n_rows), [report.layer_label(layer) for layer in layers], fontsize=font + 1)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("layer")
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.6)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)

    # Row totals as labels of a twin axis on the right.
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(range(n_rows), [f"Σ {row_totals[layer]}" for layer in layers], fontsize=font + 1)
    right.tick_params(length=0)
    for spine in right.spines.values():
        spine.set_visible(False)

    bar = fig.colorbar(image, ax=[ax, right], pad=0.02, shrink=0.9, aspect=30)
    kind = "rank per matrix (fixed)" if report.fixed_rank else "learned rank per matrix"
    bar.set_label(kind)
    bar.outline.set_visible(False)

    if report.names:  # multi-matrix cells (Llama's gate_proj + up_proj): say what the numbers mean
        fig.supxlabel("; ".join(f"{report.role_label(r)}: the number is the sum over the {' + '.join(e)} "
                                f"matrices, the colour their mean" for r, e in report.names.items()),
                      fontsize=8, color="#444444")
    fig.suptitle(f"{report.task} · {report.method} — {report.fixed_rank_text if report.fixed_rank else 'learned rank'}"
                 " per layer × module",
                 fontsize=12, fontweight="bold")
    ax.set_title(report.subtitle(), fontsize=9, color="#444444", pad=10)
    return _save(fig, out_png)


def rank_trajectory(report: "RankReport", out_png: str | os.PathLike) -> Path:
    """Total and expected rank against the target over training, and the rank per role."""
    traj = report.trajectory
    fig = _new_figure(8.5, 6.8)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    fig.suptitle(f"{report.task} · {report.method} — rank during training", fontsize=12, fontweight="bold")
    top.set_title(report.subtitle(), fontsize=9, color="#444444")
    if not traj:
        for ax in (top, bottom):
            ax.text(0.5, 0.5, "no rank trajectory recorded", ha="center", va="center",
                    transform=ax.transAxes, color="#777777")
            ax.set_axis_off()
        return _save(fig, out_png)

    steps = [p.get("step", i) for i, p in enumerate(traj)]

    def series(key: str) -> tuple[list, list]:
        pts = [(s, p[key]) for s, p in zip(steps, traj) if isinstance(p.get(key), (int, float))]
        return [s for s, _ in pts], [v for _, v in pts]

    x, y = series("total_rank")
    if x:
        top.plot(x, y, drawstyle="steps-post", color="#1f4e79", linewidth=2.2, label="total rank")
    x, y = series("expected_rank_total")
    if x:
        top.plot(x, y, color="#e07b00", linewidth=1.6, linestyle="--", label="expected rank (gates)")
    x, y = series("target_total")
    if x:
        top.plot(x, y, color="#333333", linewidth=1.3, linestyle=":", label="target")
    if report.budget_total:
        top.axhline(report.budget_total, color="#c0392b", linewidth=1, alpha=0.8,
                    label=f"budget {report.budget_total:g}")
    if report.initial_total:
        top.axhline(report.initial_total, color="#999999", linewidth=0.8, alpha=0.8,
                    label=f"initial {report.initial_total}")
    top.set_ylabel("rank (all matrices)")
    top.set_ylim(bottom=0)
    top.legend(loc="best", fontsize=8, frameon=False)
    top.grid(alpha=0.3)

    roles = [r for r in report.roles if any(r in (p.get("per_role") or {}) for p in traj)]
    roles += sorted({r for p in traj for r in (p.get("per_role") or {})} - set(roles))
    for k, role in enumerate(roles):
        x, y = zip(*[(s, p["per_role"][role]) for s, p in zip(steps, traj)
                     if role in (p.get("per_role") or {})])
        bottom.plot(x, y, drawstyle="steps-post", linewidth=1.6, color=role_color(role, k),
                    label=report.role_label(role))
    bottom.set_ylabel("rank per role")
    bottom.set_xlabel("step")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    if roles:
        bottom.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return _save(fig, out_png)


def rank_distributions(reports: Sequence["RankReport"], out_png: str | os.PathLike,
                       title: str | None = None) -> Path:
    """Compare where the rank went: share per role (stacked bars) and share per layer (lines)."""
    labels = [r.label for r in reports]
    # Disambiguate equal labels (same task, different method/seed) so no bar is hidden.
    if len(set(labels)) < len(labels):
        labels = [f"{r.label} · {r.method}" for r in reports]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} · seed {r.seed}" for lab, r in zip(labels, reports)]
    roles: list[str] = []
    for r in reports:
        roles += [role for role in r.roles if role not in roles]

    fig = _new_figure(13.0, max(4.2, 0.45 * len(reports) + 2.6))
    left, right = fig.subplots(1, 2, width_ratios=[1.15, 1])
    fig.suptitle(title or "Where the learned rank goes: share per module role and per layer",
                 fontsize=12, fontweight="bold")

    y = np.arange(len(reports))
    start = np.zeros(len(reports))
    for k, role in enumerate(roles):
        share = np.array([100.0 * r.role_shares().get(role, 0.0) for r in reports])
        bars = left.barh(y, share, left=start, color=role_color(role, k), edgecolor="white",
                         linewidth=0.8, label=role)
        for bar, value in zip(bars, share):
            if value >= 7:
                left.text(bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2,
                          f"{value:.0f}", ha="center", va="center", fontsize=8,
                          color=_ink_for(role_color(role, k)))
        start += share
    left.set_yticks(y, labels)
    left.invert_yaxis()
    left.set_xlim(0, 100)
    left.set_xlabel("share of the total learned rank (%)")
    left.set_title("by module role", fontsize=10)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=min(len(roles), 6),
                fontsize=8, frameon=False)
    for spine in ("top", "right"):
        left.spines[spine].set_visible(False)

    depths = {len([l for l in r.layers if l >= 0]) for r in reports}
    same_depth = len(depths) == 1
    for k, (r, label) in enumerate(zip(reports, labels)):
        shares = r.layer_shares()
        layers = [l for l in r.layers if l >= 0]
        if not layers:
            continue
        xs = layers if same_depth else [l / max(len(layers) - 1, 1) for l in layers]
        right.plot(xs, [100.0 * shares.get(l, 0.0) for l in layers], marker="o", markersize=3.5,
                   linewidth=1.5, color=_PALETTE[k % len(_PALETTE)], label=label)
    if same_depth and depths != {0}:
        n = depths.pop()
        right.axhline(100.0 / n, color="#888888", linestyle="--", linewidth=1, label="uniform")
        right.set_xlabel("layer")
        if n <= 32:
            right.set_xticks(range(n))
    else:
        right.set_xlabel("relative depth (0 = first layer, 1 = last)")
    right.set_ylabel("share of the total learned rank (%)")
    right.set_ylim(bottom=0)
    right.set_title("by depth", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=8, frameon=False, loc="best")
    for spine in ("top", "right"):
        right.spines[spine].set_visible(False)
    return _save(fig, out_png)
