"""The one figure style of the experiments: colours, value-keyed colours of swept quantities,
marks, the time axis and legends. Every figure of `multimodal_dln.experiments` draws with it.

- `COLORS`: modality A blue, B fuchsia, loss black, the generalization error E_g red
  (Zhang et al. 2024's figures); `NEUTRAL` grey for legend entries that explain a mark only.
- `value_color(axis, value)`: the colour of one value of a swept quantity, the same in every
  figure. Continuous axes (`AXIS_RANGES`: ratio sigma_A/sigma_B, sigma_A, rho, init_scale,
  noise) go through one colormap (viridis, cut at 0.85 so the light end stays visible on white)
  normalised over the axis's fixed range, not over the values a figure happens to show; integer
  axes (fusion_layer, depth) and named categories (`CATEGORY_COLORS`: the greedy algorithms)
  have a fixed table. Only an axis with no known range falls back to position among the
  figure's values (`value_colors`, say so where it is used).
- `MARKS`: one mark per kind of curve, used for drawing and for the legend: theory solid lines,
  linear-network simulations open circles, ReLU networks crosses, gradient descent small
  squares, random-init networks open triangles, reduced dynamics dashed lines, each member
  (seed) a faint dot, reference levels dotted, phase times t_A / t_B dotted vertical lines.
- The time axis: every time axis shows gradient-flow time t (`TIME_LABEL`, `set_time_axis`).
  Gradient descent at learning rate lr maps to t = steps x lr; the paper's "epochs" at its lr
  `AUTHORS_LR` = 0.04 are t / 0.04 (`epochs_to_time`; docs/theory.md §1, §7).
- Legends: `mark_handle(kind, label)` (the mark in neutral grey), `line_handle(label, color)`
  (a plain curve), `value_handle(axis, value)`
  (the value's colour with the theory line and the simulation circle), `legend(ax, handles)`.
  Legends, not titles, explain marks; every legend entry shows its mark.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .._constants import AUTHORS_LR

__all__ = [
    "AXIS_RANGES",
    "CATEGORY_COLORS",
    "COLORS",
    "INTEGER_COLORS",
    "MARKS",
    "NEUTRAL",
    "TIME_LABEL",
    "VALUE_LABELS",
    "epochs_to_time",
    "fmt_value",
    "legend",
    "line_handle",
    "mark_handle",
    "patch_handle",
    "plain_log_y",
    "set_time_axis",
    "value_color",
    "value_colors",
    "value_handle",
    "value_label",
]

COLORS = {"A": "tab:blue", "B": "fuchsia", "loss": "black", "E_g": "red"}
NEUTRAL = "0.35"

# ------------------------------------------------------------------------------------------------
# value-keyed colours
# ------------------------------------------------------------------------------------------------
_CMAP, _CMAP_TOP = "viridis", 0.85
AXIS_RANGES: dict[str, tuple[float, float, str]] = {
    "ratio": (1.0, 3.0, "linear"),
    "sigma_A": (1.0, 3.0, "linear"),  # the XOR task's sigma_A is sigma_A / sigma_B (sigma_B = 1)
    "rho": (-1.0, 1.0, "linear"),
    "init_scale": (1e-30, 1.0, "log"),
    "noise": (0.0, 1.0, "linear"),
}
"""Fixed (low, high, scale) per continuous axis: the colormap's range (values outside clip)."""

INTEGER_COLORS = {1: "#984ea3", 2: "#4daf4a", 3: "#377eb8", 4: "#e41a1c", 5: "#ff7f00",
                  6: "#a65628", 7: "#f781bf", 8: "#999999"}  # fmt: skip
"""Fixed colour per integer value of fusion_layer / depth (L_f = 4 red, 3 blue, 2 green, 1
purple in every figure)."""
_INTEGER_AXES = ("fusion_layer", "depth", "L_f")

CATEGORY_COLORS = {
    "vanilla": "0.2",
    "balanced": "tab:green",
    "balanced Q=1": "tab:orange",
    "balanced Q=5": "tab:green",
    "random": "tab:purple",
    "ensemble": "tab:blue",
    "image-only": "tab:cyan",
    "colour-only": "tab:brown",
    "two-layer late, M = 3": "0.2",
    "two-layer late, M = 4": "tab:purple",
    "late L = 3, M = 3": "tab:green",
    "intermediate L = 3, L_f = 2, M = 3": "tab:orange",
}
"""Fixed colours of named categories: the greedy-learning algorithms (Wu et al. 2022; plain
"balanced" is the authors' Q = 5), the unimodal baselines of the coloured-digits entry and the
network structures of the M-modality entry."""

VALUE_LABELS = {
    "rho": ("correlation $\\rho$", "$\\rho$"),
    "ratio": ("variance ratio $\\sigma_A/\\sigma_B$", "$\\sigma_A/\\sigma_B$"),
    "sigma_A": ("$\\sigma_A$", "$\\sigma_A$"),
    "init_scale": ("initialization $u_0$", "$u_0$"),
    "fusion_layer": ("fusion layer $L_f$", "$L_f$"),
    "L_f": ("fusion layer $L_f$", "$L_f$"),
    "depth": ("depth $L$", "$L$"),
    "seed": ("seed", "seed"),
}
"""(axis label, short symbol) per quantity."""


def fmt_value(axis: str, v) -> str:
    """A value as legends print it (u0 in scientific notation when small)."""
    if axis == "init_scale" and isinstance(v, (int, float)) and 0 < v < 1e-2:
        return f"{v:.0e}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def value_label(axis: str, v) -> str:
    """'<symbol> = <value>', e.g. '$\\sigma_A/\\sigma_B$ = 1.5'."""
    return f"{VALUE_LABELS.get(axis, (axis, axis))[1]} = {fmt_value(axis, v)}"


def _has_range(axis: str) -> bool:
    return axis in AXIS_RANGES or axis in _INTEGER_AXES


def value_color(axis: str, value):
    """The RGBA colour of `value` of the swept quantity `axis`, the same in every figure
    (module docstring); ValueError for an axis without a fixed range or table."""
    if axis in _INTEGER_AXES:
        v = int(value)
        return to_rgba(INTEGER_COLORS.get(v, INTEGER_COLORS[(v - 1) % 8 + 1]))
    if axis in ("algorithm", "run"):
        return to_rgba(CATEGORY_COLORS[str(value)])
    if axis not in AXIS_RANGES:
        raise ValueError(f"no fixed colour range for axis {axis!r}; use value_colors.")
    lo, hi, scale = AXIS_RANGES[axis]
    v = float(value)
    if scale == "log":
        lo, hi, v = math.log10(lo), math.log10(hi), math.log10(max(v, 1e-300))
    frac = min(max((v - lo) / (hi - lo), 0.0), 1.0)
    return matplotlib.colormaps[_CMAP](_CMAP_TOP * frac)


def value_colors(axis: str, values) -> dict:
    """{value: colour} for `values`: `value_color` where the axis has a fixed range or table,
    else (an axis without one) by position among the sorted values."""
    vals = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    if _has_range(axis):
        return {v: value_color(axis, v) for v in vals}
    n = max(len(vals) - 1, 1)
    cmap = matplotlib.colormaps[_CMAP]
    return {v: cmap(_CMAP_TOP * i / n) for i, v in enumerate(vals)}


# ------------------------------------------------------------------------------------------------
# marks
# ------------------------------------------------------------------------------------------------
MARKS: dict[str, dict] = {
    "theory": dict(ls="-", lw=1.5),
    "simulation": dict(ls="none", marker="o", mfc="none", ms=5, mew=1.2),
    "member": dict(ls="none", marker="o", ms=3, mew=0, alpha=0.35),
    "relu": dict(ls="none", marker="x", ms=6, mew=1.2),
    "gd": dict(ls="none", marker="s", mfc="none", ms=3.5, mew=1.0),
    "gd_theory": dict(ls=":", lw=1.0),
    "random_init": dict(ls="none", marker="^", mfc="none", ms=4, mew=1.0),
    "aligned": dict(ls="none", marker="o", mfc="none", ms=5, mew=1.2),
    "reduced": dict(ls="--", lw=1.0),
    "first_order": dict(ls="--", lw=1.0),
    "reference": dict(ls=":", lw=1.0),
    "prediction": dict(ls="--", lw=0.9),
    "phase_time": dict(ls=":", lw=1.1),
}
"""Line2D keyword arguments per kind of curve (module docstring); draw with
``ax.plot(x, y, color=c, **MARKS[kind])`` and explain with `mark_handle(kind, ...)`."""


def mark_handle(kind: str, label: str, color=NEUTRAL, **override) -> Line2D:
    """A legend entry showing the mark of `kind` (in `color`, neutral grey by default)."""
    kw = dict(MARKS[kind])
    if "alpha" in kw:
        kw["alpha"] = 0.6  # faint marks stay visible in the legend
    kw |= override
    return Line2D([], [], color=color, label=label, **kw)


def line_handle(label: str, color=NEUTRAL, *, ls="-", lw=1.5, **kw) -> Line2D:
    """A legend entry for a plain curve (a loss, a weight, a reference level)."""
    return Line2D([], [], color=color, ls=ls, lw=lw, label=label, **kw)


def value_handle(axis: str, value, *, label: str | None = None, color=None, **kw) -> Line2D:
    """A legend entry for one value of a swept quantity: its colour as a line with the
    simulation circle on it (override with Line2D keywords)."""
    c = value_color(axis, value) if color is None else color
    style = dict(ls="-", lw=1.5, marker="o", mfc="none", ms=5) | kw
    return Line2D([], [], color=c, label=label or value_label(axis, value), **style)


def patch_handle(label: str, color, alpha: float = 1.0) -> Patch:
    """A legend entry for a filled area or bar."""
    return Patch(facecolor=color, alpha=alpha, edgecolor="none", label=label)


def legend(ax, handles, *, fontsize=7, **kw):
    """The legend of `ax` (an Axes or a Figure) from explicit handles: no frame, small."""
    kw = dict(frameon=False, fontsize=fontsize) | kw
    return ax.legend(handles=handles, **kw)


def plain_log_y(ax) -> None:
    """A log y axis with plain tick labels (2, 5, 10, not 2 x 10^0), minor ones when the
    range is under two decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    lo, hi = ax.get_ylim()
    few = lo > 0 and hi / lo < 100
    ax.yaxis.set_minor_locator(LogLocator(subs=(2, 3, 5) if few else ()))
    ax.yaxis.set_minor_formatter(plain if few else NullFormatter())


# ------------------------------------------------------------------------------------------------
# the time axis
# ------------------------------------------------------------------------------------------------
TIME_LABEL = "time $t$ (gradient-flow units; GD: steps $\\times$ lr)"
"""The one label of every time axis: gradient-flow time t (docs/theory.md §1)."""


def epochs_to_time(epochs, lr: float = AUTHORS_LR):
    """Gradient-flow time t = epochs x lr (full-batch GD; the paper's epochs at lr 0.04)."""
    return np.asarray(epochs, float) * lr


def set_time_axis(ax, *, label: bool = True) -> None:
    """Label `ax`'s x axis as the time axis (`TIME_LABEL`)."""
    if label:
        ax.set_xlabel(TIME_LABEL)
