"""Figures in the paper's style: time ratio and misattribution against a swept parameter.

Style (`_style`, shared by every figure of the experiments): theory as lines, linear-network
simulations as open circles (the median over seeds; each seed a faint dot); a swept value has
the same colour in every figure (`_style.value_color`: e.g. sigma_A/sigma_B = 1.5 always the
same colour); legends, not titles, explain every mark; about 5.6 x 3.4 inches. The trajectory
figure (`plot_trajectory`) lives in `trajectory_plot` and is re-exported here.

Everything is drawn on `matplotlib.figure.Figure` objects with the Agg canvas (`_plotting`),
never through `pyplot`, so no global figure state is created or leaked. Each function returns
its Figure and, given `path`, also saves it (PNG by default).

Figures take rows, not files: a list of dicts (e.g.
`sweeps.load(path).to_dict("records")`), a dict of columns, or an object with a `rows`
attribute. Theory lines come from the library (`theory.time_ratio_toy_network`,
`theory.misattribution_toy_network`; docs/theory.md §2-§4).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import theory
from . import _style
from ._plotting import COLORS, new_figure, savefig
from ._style import MARKS, NEUTRAL, mark_handle, value_colors
from .trajectory_plot import plot_trajectory

__all__ = [
    "COLORS",
    "plot_misattribution",
    "plot_time_ratio",
    "plot_toy_measure",
    "plot_trajectory",
]

_LABELS = _style.VALUE_LABELS
_SERIES_KEYS = ("depth", "fusion_layer", "rho", "ratio", "init_scale")
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v")


# ------------------------------------------------------------------------------------------------
# rows and series
# ------------------------------------------------------------------------------------------------
def _rows(rows) -> list[dict]:
    """Normalize the accepted `rows` forms to a list of dicts."""
    if isinstance(rows, (str, os.PathLike)):
        raise ValueError(
            "figures take rows, not files: read them first (multimodal_dln.sweeps.load)."
        )
    if hasattr(rows, "rows") and not isinstance(rows, Mapping):
        return list(rows.rows)
    if isinstance(rows, Mapping):
        cols = {k: np.atleast_1d(np.asarray(v)) for k, v in rows.items()}
        n = {len(v) for v in cols.values()}
        if len(n) > 1:
            raise ValueError(
                f"rows given as columns must all have the same length; got lengths {sorted(n)}."
            )
        count = n.pop() if n else 0
        return [{k: v[i].item() for k, v in cols.items()} for i in range(count)]
    out = list(rows)
    if out and not isinstance(out[0], Mapping):
        raise ValueError("rows must be a list of dicts, a dict of columns or hold .rows.")
    return out


def _require(rows, cols):
    if not rows:
        raise ValueError("no rows to plot.")
    missing = [c for c in cols if c not in rows[0]]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}.")


def _fmt_value(key, v) -> str:
    return _style.fmt_value(key, v)


def _short(key) -> str:
    return _LABELS.get(key, (key, key))[1]


def _sortable(v):
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def _series(rows, x, hue):
    """Group rows into series: one per distinct value of every config key except x (and seed).

    Returns (series list of (fixed values, rows), hue values sorted, other varying keys)."""
    keys = [k for k in _SERIES_KEYS if k != x and k in rows[0]]
    varying = [k for k in keys if len({r[k] for r in rows}) > 1]
    if hue is not None and hue not in rows[0]:
        raise ValueError(f"hue column {hue!r} is not in the rows.")
    others = [k for k in varying if k != hue]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: tuple(_sortable(v) for v in kv[0]))
    series = [(dict(zip(keys, key, strict=True)), rs) for key, rs in ordered]
    hues = sorted({r[hue] for r in rows}) if hue is not None else [None]
    return series, hues, others


def _hue_colors(hue, hues, hue_order) -> dict:
    """{hue value: colour}: keyed by the value (`_style.value_color`), so a value has the same
    colour in every figure; `hue_order` orders the legend (it must hold every value)."""
    if hue_order is not None:
        missing = [h for h in hues if h not in list(hue_order)]
        if missing:
            raise ValueError(f"hue_order lacks the {hue} value(s) {missing} present in the rows.")
        hues = [h for h in hue_order if h in hues]
    if hue is None:
        return {}
    colors = value_colors(hue, hues)
    return {h: colors[h] for h in hues}


def _dense(x, xs):
    xs = np.asarray(xs, float)
    lo, hi = float(np.min(xs)), float(np.max(xs))
    if x == "rho":
        lo, hi = min(lo, -0.92) if lo < 0 else lo, max(hi, 0.92) if hi > 0 else hi
        lo, hi = max(lo - 0.02, -0.995), min(hi + 0.02, 0.995)
        return np.linspace(lo, hi, 400)
    if x == "init_scale":
        return np.geomspace(lo, hi if hi > lo else lo * 10, 200)
    if x == "fusion_layer":
        return np.arange(int(lo), int(hi) + 1)
    if hi == lo:
        lo, hi = lo * 0.9, hi * 1.1
    return np.linspace(lo, hi, 400)


def _point_stats(rs, x, ycol):
    """Per x value: the median and every seed's value, over successful rows only (a failed
    member has no phase values: it is never drawn as a point). The median, as in the tables
    (`summary.summarize`, `sweep_report.summary_table`)."""
    xs = sorted({r[x] for r in rs})
    med, pts_x, pts_y = [], [], []
    for xv in xs:
        ys = [r[ycol] for r in rs if r[x] == xv and r.get("success", True)]
        ys = [y for y in ys if y is not None and math.isfinite(y)]
        pts_x += [xv] * len(ys)
        pts_y += ys
        med.append(float(np.median(ys)) if ys else np.nan)
    arr = lambda a: np.asarray(a, float)  # noqa: E731
    return arr(xs), np.asarray(med), arr(pts_x), arr(pts_y)


# ------------------------------------------------------------------------------------------------
# drawing
# ------------------------------------------------------------------------------------------------
def _draw_theory(ax, theory_fn, x, xs, fixed, color, style) -> bool:
    """The theory curve of one series; False when no theory applies there."""
    dense = _dense(x, xs)
    args = {k: fixed.get(k, np.nan) for k in _SERIES_KEYS}
    args[x] = dense
    th = np.asarray(theory_fn(*(args[k] for k in _SERIES_KEYS)), float)
    th = np.broadcast_to(th, dense.shape)
    if not np.any(np.isfinite(th)):
        return False
    if x == "fusion_layer":
        ax.plot(dense, th, ls="none", marker="_", ms=14, mew=2, color=color)
    else:
        ax.plot(dense, th, ls=_LINESTYLES[style % len(_LINESTYLES)], lw=1.5, color=color)
    return True


def _draw_series(ax, series, x, hue, others, colors, ycol, theory_fn):
    """Points, medians and theory of every series; returns (style per other-key, drew theory)."""
    style_of: dict[tuple, int] = {}
    drew_theory = False
    for fixed, rs in series:
        color = colors[fixed.get(hue)] if hue is not None else NEUTRAL
        style = style_of.setdefault(tuple(fixed[k] for k in others), len(style_of))
        xs, med, px, py = _point_stats(rs, x, ycol)
        marker = _MARKERS[style % len(_MARKERS)]
        ax.plot(px, py, color=color, **(MARKS["member"] | {"marker": marker}))
        ax.plot(xs, med, color=color, **(MARKS["simulation"] | {"marker": marker, "ms": 6}))
        if theory_fn is not None:
            drew_theory |= _draw_theory(ax, theory_fn, x, xs, fixed, color, style)
    return style_of, drew_theory


def _axes_style(ax, rows, x, logy, ylabel) -> None:
    if logy:
        from matplotlib.ticker import LogFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    if x == "init_scale":
        ax.set_xscale("log")
    if x == "fusion_layer":
        ax.set_xticks(sorted({r[x] for r in rows}))
    ax.set_xlabel(_LABELS.get(x, (x,))[0])
    ax.set_ylabel(ylabel)


def _legend(ax, hue, hues, colors, others, style_of, drew_theory, legend_theory, x) -> None:
    handles = []
    if hue is not None:
        handles += [
            Line2D([], [], color=colors[h], lw=1.5, marker="o", mfc="none", ms=5,
                   ls="-" if drew_theory and x != "fusion_layer" else "none",
                   label=f"{_short(hue)} = {_fmt_value(hue, h)}")
            for h in colors
        ]  # fmt: skip
    for other_key, style in style_of.items():
        if others:
            label = ", ".join(
                f"{_short(k)} = {_fmt_value(k, v)}" for k, v in zip(others, other_key, strict=True)
            )
            ls, marker = _LINESTYLES[style % len(_LINESTYLES)], _MARKERS[style % len(_MARKERS)]
            handles.append(
                Line2D([], [], color="gray", ls=ls, marker=marker, mfc="none", label=label)
            )
    handles.append(mark_handle("simulation", "simulation (median over seeds)"))
    handles.append(mark_handle("member", "each seed"))
    if drew_theory:
        if x == "fusion_layer":
            handles.append(Line2D([], [], ls="none", marker="_", ms=14, mew=2, color=NEUTRAL,
                                  label=legend_theory))  # fmt: skip
        else:
            handles.append(mark_handle("theory", legend_theory))
    _style.legend(ax, handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


_SETTING_WORDS = {"flow": "gradient flow", "gd": "gradient descent"}


def _subtitle(rows, x, hue, others) -> str:
    """The fixed parameters, the shared settings and how many failed runs are omitted."""
    fixed = [k for k in _SERIES_KEYS if k not in (x, hue) and k not in others and k in rows[0]]
    sub = ", ".join(f"{_short(k)} = {_fmt_value(k, rows[0][k])}" for k in fixed)
    extra = []
    for k in ("width", "init", "method"):
        vals = {r.get(k) for r in rows}
        if len(vals) == 1 and None not in vals:
            v = vals.pop()
            extra.append(f"width {v}" if k == "width" else _SETTING_WORDS.get(v, f"{v} init"))
    if extra:
        sub += ("; " if sub else "") + ", ".join(extra)
    n_failed = sum(1 for r in rows if not r.get("success", True))
    if n_failed:
        sub += f"  ({n_failed} failed run{'s' if n_failed > 1 else ''} omitted)"
    return sub


def _scatter_plot(
    rows,
    *,
    x,
    hue,
    ycol,
    theory_fn,
    ax,
    figsize,
    logy,
    ylabel,
    title,
    legend_theory,
    hue_order=None,
):
    """Simulation points and theory lines of `ycol` against `x`, one colour per `hue`."""
    rows = _rows(rows)
    _require(rows, [x, ycol] + ([hue] if hue else []))
    series, hues, others = _series(rows, x, hue)
    colors = _hue_colors(hue, hues, hue_order)
    fig, ax = (ax.figure, ax) if ax is not None else new_figure(figsize)
    style_of, drew = _draw_series(ax, series, x, hue, others, colors, ycol, theory_fn)
    _axes_style(ax, rows, x, logy, ylabel)
    _legend(ax, hue, hues, colors, others, style_of, drew, legend_theory, x)
    ax.set_title(
        title if title is not None else _subtitle(rows, x, hue, others), fontsize="small", wrap=True
    )
    return fig


def _finish(fig: Figure, path, dpi) -> Figure:
    if path is not None:
        savefig(fig, path, dpi=dpi)
    return fig


# ------------------------------------------------------------------------------------------------
# public plots
# ------------------------------------------------------------------------------------------------
def plot_time_ratio(rows, x: str = "rho", hue: str | None = "ratio", **style) -> Figure:
    """Time ratio t_B / t_A against `x`, one colour per value of `hue` (Zhang et al. 2024,
    time-ratio sweeps; docs/theory.md §2-§3); `style` as `plot_toy_measure`.

    Theory lines where a theory exists (`theory.time_ratio_toy_network`): the late-fusion toy
    formula 1 + (r^2 - 1)/(1 - rho^2) for L_f = L, exactly 1 for L_f = 1, the leading-order
    deep formula for 1 < L_f < L; none for depth 1 or r < 1. Log y-axis by default.
    """
    return plot_toy_measure(rows, "time_ratio", x, hue, **style)


def plot_misattribution(rows, x: str = "rho", hue: str | None = "ratio", **style) -> Figure:
    """Misattribution W_A^tot(t_uni) - W_A^tot(inf) against `x` (default rho; Zhang et al.
    2024, misattribution; docs/theory.md §4), with the theory rho / r drawn where a unimodal
    phase is predicted (L_f >= 2, r > 1; `theory.misattribution_toy_network`); `style` as
    `plot_toy_measure`."""
    return plot_toy_measure(rows, "misattribution", x, hue, **style)


def plot_toy_measure(
    rows,
    y: str,
    x: str = "rho",
    hue: str | None = "ratio",
    *,
    ax=None,
    theory: bool = True,
    logy: bool | None = None,
    hue_order=None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    figsize=(5.6, 3.4),
    dpi: int = 150,
) -> Figure:
    """One toy-sweep measurement `y` ("time_ratio" or "misattribution") against `x`.

    Simulations: median over seeds as open circles, each seed as a faint dot. Failed runs
    (status not OK) are never drawn: they have no phase values (the title counts them).
    Series differing in another varying column get their own marker and line style. `x`,
    `hue` name columns (rho, ratio, init_scale, fusion_layer). `logy` defaults to the
    measurement's natural scale (log for the time ratio). Colours follow the hue *value*
    (`_style.value_color`), the same in every figure; `hue_order` orders the legend (and must
    hold every hue value of the rows). `ax` draws into an existing Axes; `path` also saves
    the figure.
    """
    spec = _TOY_MEASURES[y]
    fig = _scatter_plot(
        rows,
        x=x,
        hue=hue,
        ycol=y,
        theory_fn=spec["theory_fn"] if theory else None,
        ax=ax,
        figsize=figsize,
        logy=spec["logy"] if logy is None else logy,
        ylabel=spec["ylabel"],
        title=title,
        legend_theory=spec["legend_theory"],
        hue_order=hue_order,
    )
    if y == "misattribution":
        target = ax if ax is not None else fig.axes[0]
        target.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    return _finish(fig, path, dpi)


def _time_ratio_theory(depth, fusion_layer, rho, ratio, init_scale):
    return theory.time_ratio_toy_network(depth, fusion_layer, rho, ratio, init_scale)


def _misattribution_theory(depth, fusion_layer, rho, ratio, init_scale):
    return theory.misattribution_toy_network(depth, fusion_layer, rho, ratio, init_scale)


_TOY_MEASURES = {
    "time_ratio": {
        "theory_fn": _time_ratio_theory,
        "logy": True,
        "ylabel": "time ratio $t_B / t_A$",
        "legend_theory": "theory",
    },
    "misattribution": {
        "theory_fn": _misattribution_theory,
        "logy": False,
        "ylabel": "misattribution $W_A^{tot}(t_{uni}) - W_A^{tot}(\\infty)$",
        "legend_theory": "theory $\\rho / r$",
    },
}
