"""Figures in the paper's style (digest section 3): time ratio, misattribution, trajectories.

Conventions (digest 3): modality A blue, B fuchsia, loss black; theory as lines, linear-network
simulations as open circles; sweep colours from the 'Set1' colormap; about 4 x 3 inches.

Everything is drawn on `matplotlib.figure.Figure` objects with the Agg canvas, never through
`pyplot`, so no global figure state is created or leaked (safe in loops, threads and tests).
Each function returns its Figure and, given `path`, also saves it (PNG by default).

`rows` arguments accept sweep rows in any of these forms: a list of dicts (as in
`SweepResult.rows` or `sweep.read_results`), a dict of columns, a `SweepResult`, or the path of
a ``results.csv`` / sweep directory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .sweep import theory_misattribution, theory_time_ratio

__all__ = ["plot_time_ratio", "plot_misattribution", "plot_trajectory", "COLORS"]

COLORS = {"A": "tab:blue", "B": "fuchsia", "loss": "black", "E_g": "red"}

_LABELS = {
    "rho": ("correlation $\\rho$", "$\\rho$"),
    "ratio": ("variance ratio $\\sigma_A/\\sigma_B$", "$\\sigma_A/\\sigma_B$"),
    "init_scale": ("initialization $u_0$", "$u_0$"),
    "fusion_layer": ("fusion layer $L_f$", "$L_f$"),
    "depth": ("depth $L$", "$L$"),
    "seed": ("seed", "seed"),
}
_SERIES_KEYS = ("depth", "fusion_layer", "rho", "ratio", "init_scale")
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _new_figure(figsize, ax=None, ncols=1):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _finish(fig: Figure, path, dpi) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def _rows(rows) -> list[dict]:
    """Normalize the accepted `rows` forms to a list of dicts."""
    from .sweep import SweepResult, read_results

    if isinstance(rows, SweepResult):
        return list(rows.rows)
    if isinstance(rows, (str, os.PathLike)):
        return read_results(rows)
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
        raise ValueError(
            "rows must be a list of dicts, a dict of columns, a SweepResult or a results.csv path."
        )
    return out


def _require(rows, cols):
    if not rows:
        raise ValueError("no rows to plot.")
    missing = [c for c in cols if c not in rows[0]]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}.")


def _fmt_value(key, v) -> str:
    if key == "init_scale":
        return f"{v:.0e}" if v < 1e-2 else f"{v:g}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _series(rows, x, hue, ok_only):
    """Group rows into series: one per distinct value of every config key except x (and seed).

    Returns (series list, hue values sorted, other varying keys)."""
    keys = [k for k in _SERIES_KEYS if k != x and k in rows[0]]
    varying = [k for k in keys if len({r[k] for r in rows}) > 1]
    if hue is not None and hue not in rows[0]:
        raise ValueError(f"hue column {hue!r} is not in the rows.")
    others = [k for k in varying if k != hue]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    series = []
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(_sortable(v) for v in kv[0])):
        fixed = dict(zip(keys, key, strict=True))
        series.append((fixed, rs))
    hues = sorted({r[hue] for r in rows}) if hue is not None else [None]
    return series, hues, others


def _sortable(v):
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def _colors(n):
    import matplotlib

    cmap = matplotlib.colormaps["Set1"]
    return [cmap(i % cmap.N) for i in range(n)]


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


def _point_stats(rs, x, ycol, ok_only):
    """Per x value: the mean and every seed's value, over successful rows only (a failed
    member has no phase values, whatever `ok_only` says: it is never drawn as a point)."""
    del ok_only
    xs = sorted({r[x] for r in rs})
    mean, pts_x, pts_y = [], [], []
    for xv in xs:
        ys = [r[ycol] for r in rs if r[x] == xv and r.get("success", True)]
        ys = [y for y in ys if y is not None and math.isfinite(y)]
        pts_x += [xv] * len(ys)
        pts_y += ys
        mean.append(float(np.mean(ys)) if ys else np.nan)
    return (
        np.asarray(xs, float),
        np.asarray(mean),
        np.asarray(pts_x, float),
        np.asarray(pts_y, float),
    )


def _scatter_plot(
    rows,
    *,
    x,
    hue,
    ycol,
    theory_fn,
    ax,
    figsize,
    ok_only,
    logy,
    ylabel,
    title,
    path,
    dpi,
    legend_theory,
    hue_order=None,
):
    rows = _rows(rows)
    _require(rows, [x, ycol] + ([hue] if hue else []))
    n_failed = sum(1 for r in rows if not r.get("success", True))
    series, hues, others = _series(rows, x, hue, ok_only)
    if hue_order is not None:
        order = list(hue_order)
        missing = [h for h in hues if h not in order]
        if missing:
            raise ValueError(f"hue_order lacks the {hue} value(s) {missing} present in the rows.")
        colors = dict(zip(order, _colors(len(order)), strict=True))
    else:
        colors = dict(zip(hues, _colors(len(hues)), strict=True))
    fig, ax = _new_figure(figsize, ax)
    style_of: dict[tuple, int] = {}
    drew_theory = False
    for fixed, rs in series:
        color = colors[fixed.get(hue)] if hue is not None else _colors(1)[0]
        other_key = tuple(fixed[k] for k in others)
        style = style_of.setdefault(other_key, len(style_of))
        xs, mean, px, py = _point_stats(rs, x, ycol, ok_only)
        marker = _MARKERS[style % len(_MARKERS)]
        ax.plot(px, py, ls="none", marker=marker, ms=3, color=color, alpha=0.3, mew=0)
        ax.plot(xs, mean, ls="none", marker=marker, ms=6, mfc="none", mec=color, mew=1.3)
        if theory_fn is not None:
            dense = _dense(x, xs)
            args = {k: fixed.get(k, np.nan) for k in _SERIES_KEYS}
            args[x] = dense
            th = np.asarray(
                theory_fn(
                    args["depth"],
                    args["fusion_layer"],
                    args["rho"],
                    args["ratio"],
                    args["init_scale"],
                ),
                float,
            )
            th = np.broadcast_to(th, dense.shape)
            if np.any(np.isfinite(th)):
                ls = _LINESTYLES[style % len(_LINESTYLES)]
                if x == "fusion_layer":
                    ax.plot(dense, th, ls="none", marker="_", ms=14, mew=2, color=color)
                else:
                    ax.plot(dense, th, ls=ls, lw=1.2, color=color)
                drew_theory = True
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
    handles = []
    if hue is not None:
        short = _LABELS.get(hue, (hue, hue))[1]
        handles += [
            Line2D([], [], color=colors[h], lw=2, label=f"{short} = {_fmt_value(hue, h)}")
            for h in hues
        ]
    for other_key, style in style_of.items():
        if others:
            label = ", ".join(
                f"{_LABELS.get(k, (k, k))[1]} = {_fmt_value(k, v)}"
                for k, v in zip(others, other_key, strict=True)
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    color="gray",
                    ls=_LINESTYLES[style % len(_LINESTYLES)],
                    marker=_MARKERS[style % len(_MARKERS)],
                    mfc="none",
                    label=label,
                )
            )
    handles.append(
        Line2D([], [], ls="none", marker="o", mfc="none", mec="gray", label="simulation (mean)")
    )
    if drew_theory:
        handles.append(Line2D([], [], color="gray", lw=1.2, label=legend_theory))
    ax.legend(handles=handles, fontsize="x-small", frameon=False, loc="best")
    fixed_all = [
        k for k in _SERIES_KEYS if k != x and k != hue and k not in others and k in rows[0]
    ]
    sub = ", ".join(f"{_LABELS.get(k, (k, k))[1]} = {_fmt_value(k, rows[0][k])}" for k in fixed_all)
    extra = []
    for k in ("width", "init", "method"):
        vals = {r.get(k) for r in rows}
        if len(vals) == 1 and None not in vals:
            v = vals.pop()
            extra.append(
                f"width {v}"
                if k == "width"
                else (
                    "gradient flow"
                    if v == "flow"
                    else ("gradient descent" if v == "gd" else f"{v} init")
                )
            )
    if extra:
        sub += ("; " if sub else "") + ", ".join(extra)
    if n_failed:
        sub += f"  ({n_failed} failed run{'s' if n_failed > 1 else ''} omitted)"
    ax.set_title(title if title is not None else sub, fontsize="small")
    return _finish(fig, path, dpi)


# ------------------------------------------------------------------------------------------------
# public plots
# ------------------------------------------------------------------------------------------------
def plot_time_ratio(
    rows,
    x: str = "rho",
    hue: str | None = "ratio",
    *,
    ax=None,
    theory: bool = True,
    only_success: bool = True,
    logy: bool = True,
    hue_order=None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    figsize=(4.5, 3.4),
    dpi: int = 150,
) -> Figure:
    """Time ratio t_B / t_A against `x`, one colour per value of `hue` (digest 3, F4c / F6b-d).

    Simulations: mean over seeds as open circles, each seed as a faint dot. Failed runs
    (status not OK) are never drawn: they have no phase values (`only_success` is kept for
    compatibility; the title counts them). Theory lines where a theory exists
    (`sweep.theory_time_ratio`): the late-fusion toy formula 1 + (r^2 - 1)/(1 - rho^2) for
    L_f = L, exactly 1 for L_f = 1, the leading-order deep formula for 1 < L_f < L; none for
    depth 1 or r < 1. Series differing in another varying column get their own marker and line
    style. `x`, `hue` name columns (rho, ratio, init_scale, fusion_layer). Log y-axis.
    `hue_order` fixes the hue values' colours (Set1 in that order), e.g. to keep colours
    consistent between figures that show different subsets. `ax` draws into an existing Axes.
    """
    return _scatter_plot(
        rows,
        x=x,
        hue=hue,
        ycol="time_ratio",
        theory_fn=theory_time_ratio if theory else None,
        ax=ax,
        figsize=figsize,
        ok_only=only_success,
        logy=logy,
        ylabel="time ratio $t_B / t_A$",
        title=title,
        path=path,
        dpi=dpi,
        legend_theory="theory",
        hue_order=hue_order,
    )


def plot_misattribution(
    rows,
    x: str = "rho",
    hue: str | None = "ratio",
    *,
    ax=None,
    theory: bool = True,
    only_success: bool = True,
    hue_order=None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    figsize=(4.5, 3.4),
    dpi: int = 150,
) -> Figure:
    """Misattribution W_A^tot(t_uni) - W_A^tot(inf) against `x` (default rho; digest 3, F4d),
    with the theory rho / r drawn where a unimodal phase is predicted (L_f >= 2, r > 1)."""
    fig = _scatter_plot(
        rows,
        x=x,
        hue=hue,
        ycol="misattribution",
        theory_fn=theory_misattribution if theory else None,
        ax=ax,
        figsize=figsize,
        ok_only=only_success,
        logy=False,
        ylabel="misattribution $W_A^{tot}(t_{uni}) - W_A^{tot}(\\infty)$",
        title=title,
        path=None,
        dpi=dpi,
        legend_theory="theory $\\rho / r$",
        hue_order=hue_order,
    )
    target = ax if ax is not None else fig.axes[0]
    target.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    return _finish(fig, path, dpi)


def _scalar(a) -> float:
    return float(np.asarray(a).reshape(-1)[0])


def plot_trajectory(
    traj_member,
    measurements_member=None,
    stats=None,
    *,
    xscale: str = "linear",
    t_max: float | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    figsize=(8.0, 3.2),
    dpi: int = 150,
) -> Figure:
    """Loss and effective weights of ONE run (digest 3, F2/F3), two panels:

    - left: loss / initial loss (black), with the unimodal plateau L(M_A)/L(0) dashed;
    - right: W_A^tot and W_B^tot divided by their final values (A blue, B fuchsia); for
      scalar modalities the signed weights (so the plateau of W_A at W_A^uni / W_A^tot(inf) =
      1 + rho/r on the toy data shows, dotted), otherwise Frobenius norms.

    t_A and t_B are dotted vertical lines in both panels, labelled in the modality colours.
    `traj_member` is one member (`traj[i]`), `measurements_member` its `measure(...)` entry
    (computed if None), `stats` the statistics it trained on (one member). Time is in
    gradient-flow units (for GD, steps x lr). The x-axis runs to the end of the run
    (or `t_max`); `xscale` "linear" (as in the paper) or "log".
    """
    from . import theory as _theory
    from ._measurements import measure

    if stats is None:
        raise ValueError("plot_trajectory needs the statistics the run trained on (stats=...).")
    if np.ndim(traj_member.ts) != 1:
        if np.shape(traj_member.ts)[0] == 1:
            traj_member = traj_member[0]
        else:
            raise ValueError(
                f"plot_trajectory draws one run; got a batch of {np.shape(traj_member.ts)[0]} (pass traj[i])."
            )
    if np.ndim(stats.sigma_xx) != 2:
        if np.shape(stats.sigma_xx)[0] == 1:
            import jax

            stats = jax.tree.map(lambda a: a[0], stats)
        else:
            raise ValueError(
                "plot_trajectory needs the statistics of one run (index the batch first)."
            )
    if measurements_member is None:
        measurements_member = measure(traj_member, stats)
    m = measurements_member
    if np.ndim(m.t_A) != 0:
        if np.size(m.t_A) == 1:
            import jax

            m = jax.tree.map(
                lambda a: a.reshape(a.shape[1:]) if a.ndim and a.shape[0] == 1 else a, m
            )
        else:
            raise ValueError(
                "plot_trajectory needs the measurements of one run (index the batch first)."
            )
    if xscale not in ("linear", "log"):
        raise ValueError(f"xscale must be 'linear' or 'log'; got {xscale!r}.")

    ts = np.asarray(traj_member.ts)
    loss = np.asarray(traj_member.loss)
    t_end = float(traj_member.t_end)
    t_hi = float(t_max) if t_max is not None else t_end
    keep = ts <= t_hi * (1 + 1e-12)
    if xscale == "log":
        keep &= ts > 0
    w_all = np.asarray(traj_member.weights)
    ts, loss, w = ts[keep], loss[keep], w_all[keep]
    if t_max is None and (ts.size == 0 or ts[-1] < t_end):
        # save slots after t_end hold the final state: draw it at t_end itself
        ts = np.append(ts, t_end)
        loss = np.append(loss, np.asarray(traj_member.loss)[-1])
        w = np.concatenate([w, w_all[-1:]], axis=0)
    d_A = traj_member.d_A
    w_A, w_B = w[..., :d_A], w[..., d_A:]
    scalar = w_A.shape[-2:] == (1, 1) and w_B.shape[-2:] == (1, 1)
    if scalar:
        a, b = w_A[:, 0, 0], w_B[:, 0, 0]
        y_label = "$W^{tot}_m(t) / W^{tot}_m(\\mathrm{end})$"
    else:
        a, b = (np.sqrt((v**2).sum(axis=(-2, -1))) for v in (w_A, w_B))
        y_label = "$\\|W^{tot}_m(t)\\| / \\|W^{tot}_m(\\mathrm{end})\\|$"
    a_end = (
        _scalar(np.asarray(traj_member.weights)[-1, ..., :d_A])
        if scalar
        else float(np.linalg.norm(np.asarray(traj_member.weights)[-1, ..., :d_A]))
    )
    b_end = (
        _scalar(np.asarray(traj_member.weights)[-1, ..., d_A:])
        if scalar
        else float(np.linalg.norm(np.asarray(traj_member.weights)[-1, ..., d_A:]))
    )
    safe = lambda v: v if v != 0 else 1.0  # noqa: E731
    l0 = float(np.asarray(traj_member.loss)[0])

    fig, (ax_l, ax_w) = _new_figure(figsize, None, ncols=2)
    ax_l.plot(ts, loss / safe(l0), color=COLORS["loss"], lw=1.5, label="loss")
    plateau = float(_theory.plateau_loss(stats)) / safe(l0)
    ax_l.axhline(plateau, color="0.4", ls="--", lw=1, label=f"$L(M_A)/L(0)$ = {plateau:.3g}")
    ax_l.set_ylabel("loss / initial loss")
    ax_w.plot(ts, a / safe(a_end), color=COLORS["A"], lw=1.5, label="A")
    ax_w.plot(ts, b / safe(b_end), color=COLORS["B"], lw=1.5, label="B")
    if scalar:
        w_uni = _scalar(stats.unimodal_weights("A"))
        ax_w.axhline(
            w_uni / safe(a_end),
            color=COLORS["A"],
            ls=":",
            lw=0.9,
            label=f"$W_A^{{uni}}/W_A^{{tot}}(\\mathrm{{end}})$ = {w_uni / safe(a_end):.3g}",
        )
    ax_w.set_ylabel(y_label)
    t_A, t_B = float(m.t_A), float(m.t_B)
    for ax in (ax_l, ax_w):
        for t, name, c in ((t_A, "A", COLORS["A"]), (t_B, "B", COLORS["B"])):
            if math.isfinite(t) and (xscale == "linear" or t > 0):
                ax.axvline(t, color=c, ls=":", lw=1.2)
                ax.annotate(
                    f"$t_{name}$",
                    xy=(t, 0.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(2, 4),
                    textcoords="offset points",
                    color=c,
                    fontsize="small",
                )
        ax.set_xscale(xscale)
        ax.set_xlabel("time $t$ (gradient-flow units)")
        if xscale == "linear":
            ax.set_xlim(0, t_hi)
        ax.legend(fontsize="x-small", frameon=False, loc="best")
    if bool(np.asarray(m.success)):
        sub = f"$t_A$ = {t_A:.4g}, $t_B$ = {t_B:.4g}, $t_B/t_A$ = {t_B / t_A:.4g}"
    else:
        sub = _failure_subtitle(traj_member, m)
    fig.suptitle(title + "\n" + sub if title else sub, fontsize="small")
    return _finish(fig, path, dpi)


def _failure_subtitle(traj_member, m) -> str:
    """'run FAILED (STATUS): reason' from the measurement (which includes the run's own
    status), else from the trajectory; wrapped to fit the figure."""
    import textwrap

    from ._status import Status

    source = m if hasattr(m, "failure_reasons") and hasattr(m, "status") else traj_member
    code = int(np.asarray(source.status).reshape(-1)[0])
    reason = source.failure_reasons()[0]
    text = f"run FAILED ({Status(code).name}): {reason}; no phase times"
    return "\n".join(textwrap.wrap(text.replace("$", "\\$"), width=110))
