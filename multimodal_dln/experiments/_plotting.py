"""Plotting helpers for the experiments: figures without global matplotlib state.

Figures are `matplotlib.figure.Figure` objects with an Agg canvas attached, never created
through `pyplot`: nothing switches the backend (``matplotlib.use`` is never called; set
``MPLBACKEND=Agg`` for headless `pyplot` use elsewhere), no figure is registered globally, so
loops, threads and tests leak nothing and need no ``close``. The style (colours, marks, the
time axis, legends) is `_style`'s.

- `COLORS`: the colour table (re-exported from `_style`).
- `new_figure(figsize, nrows=1, ncols=1, layout="constrained", **subplots_kw)`:
  ``(fig, axes)`` like ``pyplot.subplots``; the constrained layout keeps titles, labels and
  colour bars inside the figure and off each other.
- `savefig(fig, path, dpi=150, **kw)`: creates the parent folder, saves, returns the path (a
  figure that `pyplot` does manage is closed after saving).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._style import COLORS

__all__ = ["COLORS", "new_figure", "savefig"]


def new_figure(figsize, nrows: int = 1, ncols: int = 1, *, layout="constrained", **subplots_kw):
    """A new Agg-backed Figure and its axes (as `Figure.subplots(nrows, ncols, ...)`)."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, **subplots_kw)
    return fig, axes


def savefig(fig: Figure, path: str | os.PathLike, *, dpi: int = 150, **kwargs) -> Path:
    """Save `fig` to `path` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **kwargs)
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)  # a no-op for figures pyplot does not manage
    return path
