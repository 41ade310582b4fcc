"""The reports' drawing helpers: palette, role colours, a figure on its own canvas, and the PNG write.
The figures themselves live with their reports (rank_report.py, glue_figures.py), which import this
module only when they draw, so the tables never load matplotlib.

Figures are built on `matplotlib.figure.Figure` with an explicit Agg canvas instead of pyplot, so
no global backend is switched, nothing needs a display and no figure leaks into pyplot's registry
(a reproduce run draws hundreds of them). Every PNG goes through atomic_path.
"""
from __future__ import annotations

import os
from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from salora_cli.core import atomic

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
