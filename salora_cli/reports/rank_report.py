"""Per-layer rank report of one adapter run: layer × role table, totals vs budget, figures.

A cell is the learned rank of the matrices of that role in that layer (for plain LoRA, their fixed
rank r: nothing is learned and there is no budget, and the report says so). Llama's FFN input is two
matrices per layer (gate_proj, up_proj), both with role ffn_in: the cell shows their sum and the
column header / footnote says how many matrices it holds. GPT-2's fused c_attn has role "query".
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from salora_cli.core import atomic
from salora_cli.core.errors import SaloraError
from salora_cli.reports.runs import RANKS_FILE, load_run, read_json

# Display order; same names as salora.config.ROLES (not imported: that pulls in torch).
ROLES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
NO_LAYER = -1  # modules outside the numbered blocks (explicit target_modules)
FIXED_RANK_METHODS = ("lora",)  # no gates: every matrix keeps its rank r; no budget


def _md(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


@dataclass
class RankReport:
    """Ranks of one run (learned, or LoRA's fixed rank), aggregated per (layer, role) cell."""

    run_dir: Path
    task: str
    method: str
    model: str
    seed: int | None
    r_init: int | None
    budget_total: float | None
    budget_avg: float | None
    modules: list[dict]
    trajectory: list[dict] = field(default_factory=list)
    roles: list[str] = field(init=False)
    layers: list[int] = field(init=False)
    cells: dict[tuple[int, str], int] = field(init=False)  # summed rank
    counts: dict[tuple[int, str], int] = field(init=False)  # matrices in the cell
    names: dict[str, list[str]] = field(init=False)  # role -> module name endings in a multi-matrix cell

    def __post_init__(self) -> None:
        self.cells, self.counts, self.names = {}, {}, {}
        for m in self.modules:
            key = (m["layer"], m["role"])
            self.cells[key] = self.cells.get(key, 0) + m["rank"]
            self.counts[key] = self.counts.get(key, 0) + 1
        for m in self.modules:
            if self.counts[m["layer"], m["role"]] > 1:
                ending = m["name"].rsplit(".", 1)[-1] if m["name"] else "?"
                endings = self.names.setdefault(m["role"], [])
                if ending not in endings:
                    endings.append(ending)
        present = {role for _, role in self.cells}
        self.roles = [r for r in ROLES if r in present]
        self.roles += sorted(present - set(ROLES))  # "custom" and any future role, after the six
        numbered = [layer for layer, _ in self.cells if layer >= 0]
        self.layers = list(range(max(numbered) + 1)) if numbered else []
        if any(layer < 0 for layer, _ in self.cells):
            self.layers.append(NO_LAYER)

    # ---------------------------------------------------------------- totals
    @property
    def fixed_rank(self) -> bool:
        """Plain LoRA: the ranks are fixed, not learned, and there is no budget."""
        return self.method in FIXED_RANK_METHODS

    @property
    def fixed_rank_text(self) -> str:
        """"fixed rank r = 8": the one rank every matrix has, else r_init."""
        ranks = {m["rank"] for m in self.modules}
        r = ranks.pop() if len(ranks) == 1 else self.r_init
        return "fixed rank r" + (f" = {r}" if r is not None else "")

    @property
    def n_matrices(self) -> int:
        return len(self.modules)

    @property
    def total(self) -> int:
        return sum(self.cells.values())

    @property
    def initial_total(self) -> int:
        return sum(m["r_init"] for m in self.modules if m.get("r_init") is not None)

    @property
    def row_totals(self) -> dict[int, int]:
        return {layer: sum(v for (l, _), v in self.cells.items() if l == layer) for layer in self.layers}

    @property
    def col_totals(self) -> dict[str, int]:
        return {role: sum(v for (_, r), v in self.cells.items() if r == role) for role in self.roles}

    def budget_fraction(self) -> float | None:
        return self.total / self.budget_total if self.budget_total else None

    @property
    def budget_line(self) -> str:
        """"total 287 / budget 288 (99.7 %)"; for plain LoRA "total 96 (fixed rank r = 8 per matrix)"."""
        if self.fixed_rank:
            return f"total {self.total} ({self.fixed_rank_text} per matrix)"
        frac = self.budget_fraction()
        if frac is None:
            return f"total {self.total} (no budget recorded)"
        return f"total {self.total} / budget {self.budget_total:g} ({100 * frac:.1f} %)"

    def role_shares(self) -> dict[str, float]:
        """Fraction of the total learned rank held by each role."""
        total = self.total
        return {r: (v / total if total else 0.0) for r, v in self.col_totals.items()}

    def layer_shares(self) -> dict[int, float]:
        """Fraction of the total learned rank held by each numbered layer."""
        total = self.total
        return {l: (v / total if total else 0.0) for l, v in self.row_totals.items() if l >= 0}

    # ---------------------------------------------------------------- labels
    @property
    def label(self) -> str:
        return self.task

    @property
    def title(self) -> str:
        if self.fixed_rank:
            return f"Ranks — {self.task} · {self.method} ({self.fixed_rank_text})"
        return f"Learned ranks — {self.task} · {self.method}"

    def uniform_count(self, role: str) -> int | None:
        """The number of matrices per cell of `role` when it is the same in every layer."""
        counts = {c for (_, r), c in self.counts.items() if r == role}
        return counts.pop() if len(counts) == 1 else None

    def role_label(self, role: str) -> str:
        count = self.uniform_count(role)
        return f"{role} ×{count}" if count and count > 1 else role

    @staticmethod
    def layer_label(layer: int) -> str:
        return "other" if layer == NO_LAYER else str(layer)

    def cell_text(self, layer: int, role: str) -> str:
        if (layer, role) not in self.cells:
            return "–"
        text = str(self.cells[layer, role])
        count = self.counts[layer, role]
        if count > 1 and self.uniform_count(role) is None:
            text += f" (×{count})"
        return text

    def subtitle(self) -> str:
        parts = [self.model, f"seed {self.seed}" if self.seed is not None else None, self.budget_line,
                 f"r_init {self.r_init}" if self.r_init is not None and not self.fixed_rank else None]
        return " · ".join(p for p in parts if p)

    def footnotes(self) -> list[str]:
        notes = []
        for role, endings in self.names.items():
            count = self.uniform_count(role)
            how = f"{count} matrices" if count else "several matrices"
            notes.append(f"{role}: each cell is the sum over {how} per layer ({' + '.join(endings)})")
        if any(m["name"].endswith("c_attn") for m in self.modules):
            notes.append("query: GPT-2's fused c_attn matrix (query, key and value projections in one)")
        if NO_LAYER in self.layers:
            notes.append("other: adapted matrices outside the numbered transformer blocks")
        return notes

    def summary_lines(self) -> list[str]:
        lines = [self.budget_line]
        if self.fixed_rank:
            return lines + [f"{self.n_matrices} adapted matrices"]
        if self.initial_total:
            lines.append(f"initial {self.initial_total} ({self.n_matrices} matrices"
                         + (f" × r_init {self.r_init}" if self.r_init else "") + ")"
                         + (f", now {self.total / self.n_matrices:.2f} per matrix on average"
                            if self.n_matrices else ""))
        removal = self.removal_line
        if removal:
            lines.append(removal)
        return lines

    @property
    def removal_line(self) -> str | None:
        """How the components went: closed by their gates during training, or cut by the freeze
        projection (recorded per trajectory point by SaLoRA runs)."""
        last = self.trajectory[-1] if self.trajectory else {}
        if "removed_by_gates" not in last:
            return None
        gates, cut = int(last["removed_by_gates"]), int(last.get("removed_by_projection", 0))
        share = f" ({100 * cut / self.initial_total:.1f} % of initial)" if self.initial_total else ""
        return f"removed {gates + cut}: {gates} closed by their gates during training, {cut} by the freeze projection{share}"

    # ------------------------------------------------------------- renderers
    def _body(self) -> tuple[list[str], list[list[str]], list[str]]:
        headers = ["Layer"] + [self.role_label(r) for r in self.roles] + ["Total"]
        rows = [[self.layer_label(layer)] + [self.cell_text(layer, r) for r in self.roles]
                + [str(self.row_totals[layer])] for layer in self.layers]
        col = self.col_totals
        footer = ["Total"] + [str(col[r]) for r in self.roles] + [str(self.total)]
        return headers, rows, footer

    @property
    def table(self) -> Table:
        """The layer × role table for the terminal."""
        headers, rows, footer = self._body()
        table = Table(title=self.title, title_style="bold",
                      header_style="bold", caption=" · ".join(self.summary_lines()),
                      caption_justify="left")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
        for i, row in enumerate(rows):
            table.add_row(*row, end_section=i == len(rows) - 1)
        table.add_row(*footer, style="bold")
        return table

    def __rich__(self) -> Group:
        notes = [Text(f"* {n}", style="dim") for n in self.footnotes()]
        return Group(self.table, *notes)

    def print(self, console: Console | None = None) -> None:
        (console or Console()).print(self)

    @property
    def markdown(self) -> str:
        headers, rows, footer = self._body()

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(_md(c) for c in cells) + " |"

        table = [line(headers), "|---|" + "|".join("---:" for _ in headers[1:]) + "|"]
        table += [line(r) for r in rows]
        table.append(line([f"**{c}**" for c in footer]))
        if self.fixed_rank:
            cell = ("the rank of that layer's matrix of that role: plain LoRA keeps its fixed rank r "
                    "throughout training (no gates, nothing removed)")
        else:
            cell = ("the rank learned for that layer's matrix of that role at the end of training "
                    "(components removed by the gates no longer count)")
        parts = [
            f"# {self.title}",
            f"Model {self.model}" + (f", seed {self.seed}" if self.seed is not None else "")
            + f". Each cell is {cell}; – marks a matrix that is not adapted.",
            "\n".join(table),
            "**" + self.summary_lines()[0] + "**" + "".join(f" — {s}" for s in self.summary_lines()[1:]),
        ]
        notes = self.footnotes()
        if notes:
            parts.append("\n".join(f"- {_md(n)}" for n in notes))
        if self.trajectory and not self.fixed_rank:
            first, last = self.trajectory[0], self.trajectory[-1]
            if "total_rank" in first and "total_rank" in last:
                parts.append(f"Total rank {first['total_rank']} at step {first.get('step', 0)} → "
                             f"{last['total_rank']} at step {last.get('step', '?')}.")
        parts.append("![rank heatmap](ranks_heatmap.png)\n\n![rank trajectory](rank_trajectory.png)")
        modules = "\n".join(f"| {_md(m['name'])} | {m['role']} | {self.layer_label(m['layer'])} | "
                            f"{m['rank']} | {'' if m.get('r_init') is None else m['r_init']} |"
                            for m in self.modules)
        parts.append(f"<details><summary>All {self.n_matrices} adapted matrices</summary>\n\n"
                     "| Module | Role | Layer | Rank | r_init |\n|---|---|---:|---:|---:|\n"
                     f"{modules}\n\n</details>")
        parts.append("Provenance: [config.yaml](config.yaml), [command.txt](command.txt), "
                     "[metrics.json](metrics.json), [ranks.json](ranks.json).")
        return "\n\n".join(parts) + "\n"

    def write(self, run_dir: str | os.PathLike | None = None) -> list[Path]:
        """Write ranks.md, ranks_heatmap.png and rank_trajectory.png into the run folder."""
        out = Path(run_dir) if run_dir is not None else self.run_dir
        md = out / "ranks.md"
        atomic.write_text(md, self.markdown)
        heatmap = rank_heatmap(self, out / "ranks_heatmap.png")
        trajectory = rank_trajectory(self, out / "rank_trajectory.png")
        return [md, heatmap, trajectory]


def _module(raw: Any, index: int, path: Path, r_init: int | None) -> dict:
    if not isinstance(raw, dict):
        raise SaloraError(f"{path} is corrupted (module {index} is not an object)")
    role, rank = raw.get("role"), raw.get("rank")
    if not isinstance(role, str) or not role:
        raise SaloraError(f"{path} is corrupted (module {index} has no role)")
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) or rank < 0 or rank != int(rank):
        raise SaloraError(f"{path} is corrupted (module {index} has rank {rank!r}, not a whole number ≥ 0)")
    layer = raw.get("layer")
    layer = int(layer) if isinstance(layer, (int, float)) and not isinstance(layer, bool) and layer >= 0 else NO_LAYER
    init = raw.get("r_init", r_init)
    return {"name": str(raw.get("name") or ""), "role": role, "layer": layer, "rank": int(rank),
            "r_init": int(init) if isinstance(init, (int, float)) and not isinstance(init, bool) else None}


def build_rank_report(run_dir: str | os.PathLike) -> RankReport:
    """Read a run folder's metrics.json and ranks.json into a RankReport."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    path = run_dir / RANKS_FILE
    if not path.is_file():
        raise SaloraError(f"{run_dir} has no {RANKS_FILE} (only adapter methods such as salora, lora "
                          f"and adalora record learned ranks; this run is '{run.method}')")
    data = read_json(path, RANKS_FILE)
    if not isinstance(data, dict) or not isinstance(data.get("modules"), list):
        raise SaloraError(f"{path} is corrupted (no list of modules)")
    if not data["modules"]:
        raise SaloraError(f"{path} lists no adapted modules")

    def number(key: str) -> float | None:
        v = data.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    r_init = number("r_init")
    r_init = int(r_init) if r_init is not None else None
    modules = [_module(m, i, path, r_init) for i, m in enumerate(data["modules"])]
    trajectory = [p for p in data.get("trajectory") or [] if isinstance(p, dict)]
    # plain LoRA has no budget (ranks.json records r_init × matrices there); without one, the
    # figures draw no budget line either
    fixed = run.method in FIXED_RANK_METHODS
    return RankReport(run_dir=run_dir, task=run.task, method=run.method, model=run.model, seed=run.seed,
                      r_init=r_init, budget_total=None if fixed else number("budget_total"),
                      budget_avg=None if fixed else number("budget_avg"), modules=modules, trajectory=trajectory)


def compare_rank_distributions(rank_reports: Sequence[RankReport], out_png: str | os.PathLike,
                               title: str | None = None) -> Path:
    """One figure comparing how the learned rank is spread over roles and depth across runs."""
    reports = list(rank_reports)
    if not reports:
        raise SaloraError("no rank reports to compare")
    return rank_distributions(reports, out_png, title=title)


# ------------------------------------------------------------------ figures
# matplotlib (through reports.figures) is imported inside each, when a figure is drawn
def rank_heatmap(report: RankReport, out_png: str | os.PathLike) -> Path:
    """Layer × role heatmap: colour is the learned rank per matrix (0 … r_init), the annotation the
    cell's rank (the sum where a cell holds several matrices); totals on the right and bottom."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    from salora_cli.reports.figures import HEATMAP_CMAP, _ink_for, _new_figure, _save

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


def rank_trajectory(report: RankReport, out_png: str | os.PathLike) -> Path:
    """Total and expected rank against the target over training, and the rank per role."""
    from salora_cli.reports.figures import _new_figure, _save, role_color

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


def rank_distributions(reports: Sequence[RankReport], out_png: str | os.PathLike,
                       title: str | None = None) -> Path:
    """Compare where the rank went: share per role (stacked bars) and share per layer (lines)."""
    import numpy as np

    from salora_cli.reports.figures import _PALETTE, _ink_for, _new_figure, _save, role_color

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
