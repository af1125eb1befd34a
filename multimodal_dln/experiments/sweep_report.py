"""Presenting a sweep's DataFrame (`multimodal_dln.sweeps.run` / `load`): which axes were
swept, a summary table, and a figure against the swept axis.

- `varying_axes(df)`: the axes taking more than one value, replicate axes (seed, draw,
  data_index) last.
- `summary_table(df, y)`: per configuration (every varying axis but the replicates): members,
  successes, the median of `y` over successful members, its theory and the median relative
  error.
- `plot_sweep(df, y, x=None, hue=None)`: `y` against `x` (default: the varying axis with the
  most values), one colour per `hue` value (default: the next varying axis), other varying
  axes as marker shapes; each successful member a faint dot, the median an open circle, the
  theory column (`theory_time_ratio` / `theory_misattribution`, for every fusion depth) a
  dashed line of the same colour. Colours follow the hue *value* (`_style.value_color`: a
  fixed range per axis, e.g. ratio 1.5 has the same colour in every figure; only axes without
  a known range, such as width, are coloured by position among their values). Legends, not
  titles, explain marks; the title lists only the fixed settings, wrapped to fit.
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
from matplotlib.lines import Line2D

from ..sweeps import AXIS_NAMES
from ._plotting import new_figure, savefig
from ._style import value_colors

__all__ = ["plot_sweep", "summary_table", "varying_axes"]

REPLICATES = ("seed", "draw", "data_index")
_THEORY = {"time_ratio": "theory_time_ratio", "misattribution": "theory_misattribution"}
_YLABEL = {
    "time_ratio": "time ratio $t_B / t_A$",
    "misattribution": "misattribution $W_A^{tot}(t_{uni}) - W_A^{tot}(\\infty)$",
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_TITLE_AXES = ("data", "depth", "fusion_layer", "width", "init", "init_scale", "method", "rho",
               "ratio")  # fmt: skip


def varying_axes(df) -> list[str]:
    """Axes with more than one value among the rows, replicates (seed, draw) last."""
    vary = [a for a in AXIS_NAMES if df[a].nunique(dropna=False) > 1]
    return [a for a in vary if a not in REPLICATES] + [a for a in vary if a in REPLICATES]


def _configs(df) -> list[str]:
    return [a for a in varying_axes(df) if a not in REPLICATES]


def summary_table(df, y: str = "time_ratio"):
    """One row per configuration: n, n_ok, median `y` (successful members), theory, median
    relative error (y / theory - 1)."""
    import pandas as pd

    keys = _configs(df)
    ok = df[df["success"]]
    theory = _THEORY.get(y)
    if not keys:
        keys, df, ok = ["_all"], df.assign(_all="all"), ok.assign(_all="all")
    table = df.groupby(keys, dropna=False).size().rename("n").to_frame()
    table["n_ok"] = ok.groupby(keys, dropna=False).size()
    table[f"median_{y}"] = ok.groupby(keys, dropna=False)[y].median()
    if theory is not None:
        table[theory] = df.groupby(keys, dropna=False)[theory].median()
        rel = ok[y] / ok[theory] - 1.0
        table["median_rel_error"] = rel.groupby([ok[k] for k in keys], dropna=False).median()
    table["n_ok"] = table["n_ok"].fillna(0).astype(int)
    return table.reset_index().drop(columns=["_all"], errors="ignore").pipe(pd.DataFrame)


def _choose(df, x, hue):
    configs = _configs(df)
    if x is None:
        numeric = [a for a in configs if df[a].dtype.kind in "fiu" or str(df[a].dtype) == "Int64"]
        pool = numeric or configs
        x = max(pool, key=lambda a: df[a].nunique()) if pool else "seed"
    if hue is None:
        rest = [a for a in configs if a != x]
        hue = rest[0] if rest else None
    return x, hue


def _hue_colors(hue, values) -> dict:
    """{value: colour}, keyed by the value where the axis has a fixed range (`_style`)."""
    vals = [v.item() if isinstance(v, np.generic) else v for v in values]
    return value_colors(hue, vals)


def _x_positions(df, x):
    if df[x].dtype.kind in "fiu" or str(df[x].dtype) == "Int64":
        return df[x].astype(float).to_numpy(), None
    cats = sorted(df[x].dropna().unique().tolist())
    return df[x].map({c: i for i, c in enumerate(cats)}).to_numpy(float), cats


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def plot_sweep(df, y: str = "time_ratio", x: str | None = None, hue: str | None = None, *,
               logy: bool | None = None, path: str | os.PathLike | None = None,
               figsize=(6.2, 3.8), dpi: int = 150):  # fmt: skip
    """`y` against `x`, coloured by `hue` (module docstring); returns the Figure."""
    x, hue = _choose(df, x, hue)
    others = [a for a in _configs(df) if a not in (x, hue)]
    fig, ax = new_figure(figsize)
    ok = df[df["success"]].copy()
    ok["_x"], cats = _x_positions(ok, x)
    theory = _THEORY.get(y)
    colors = _hue_colors(hue, df[hue].dropna().unique()) if hue else {None: "0.2"}
    combos = sorted(ok.groupby(others).groups) if others else [()]
    combos = [c if isinstance(c, tuple) else (c,) for c in combos]
    handles = []
    for hv, color in colors.items():
        for j, combo in enumerate(combos):
            sel = ok if hue is None else ok[ok[hue] == hv]
            for a, v in zip(others, combo, strict=True):
                sel = sel[sel[a] == v]
            if sel.empty:
                continue
            _draw(ax, sel, y, theory, color, _MARKERS[j % len(_MARKERS)])
        if hue is not None:
            handles.append(Line2D([], [], color=color, marker="o", mfc="none", ls="--",
                                  label=f"{_short(hue)} = {_fmt(hv)}"))  # fmt: skip
    handles += _style_handles(others, combos, theory is not None and ok[theory].notna().any())
    _finish_axes(ax, df, ok, x, y, cats, logy, handles, others + [a for a in (x, hue) if a])
    if path is not None:
        savefig(fig, path, dpi=dpi)
    return fig


def _draw(ax, sel, y, theory, color, marker) -> None:
    ax.plot(sel["_x"], sel[y], ls="none", marker=".", ms=3, color=color, alpha=0.35)
    med = sel.groupby("_x")[y].median()
    ax.plot(med.index, med.to_numpy(), ls="none", marker=marker, mfc="none", ms=7, color=color)
    if theory is not None:
        th = sel.groupby("_x")[theory].median().dropna()
        if len(th):
            ax.plot(th.index, th.to_numpy(), ls="--", lw=1.2, color=color,
                    marker="_" if len(th) == 1 else None)  # fmt: skip


def _style_handles(others, combos, with_theory) -> list:
    h = [Line2D([], [], ls="none", marker=".", color="0.4", alpha=0.5, label="each member"),
         Line2D([], [], ls="none", marker="o", mfc="none", color="0.2",
                label="simulation (median)")]  # fmt: skip
    if with_theory:
        h.append(Line2D([], [], ls="--", color="0.2", label="theory"))
    if len(combos) > 1:
        for j, combo in enumerate(combos):
            text = ", ".join(f"{_short(a)} = {_fmt(v)}" for a, v in zip(others, combo, strict=True))
            h.append(Line2D([], [], ls="none", marker=_MARKERS[j % len(_MARKERS)], mfc="none",
                            color="0.2", label=text))  # fmt: skip
    return h


def _short(axis: str) -> str:
    return {"fusion_layer": "L_f", "init_scale": "u0", "depth": "L", "ratio": "r"}.get(axis, axis)


def _finish_axes(ax, df, ok, x, y, cats, logy, handles, shown) -> None:
    if cats is not None:
        ax.set_xticks(range(len(cats)), cats)
    elif df[x].dtype.kind in "iu" or str(df[x].dtype) == "Int64":
        ax.set_xticks(sorted(ok["_x"].unique()))
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(_YLABEL.get(y, y))
    vals = ok[y].to_numpy(float)
    if logy is None:
        logy = y == "time_ratio" and len(vals) > 0 and np.nanmin(vals) > 0 and (
            np.nanmax(vals) / np.nanmin(vals) > 5
        )  # fmt: skip
    if logy:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if np.nanmax(vals) / np.nanmin(vals) < 20 else "")
    fixed = [
        f"{_short(a)}={_fmt(df[a].dropna().iloc[0])}"
        for a in _TITLE_AXES
        if a not in shown and df[a].notna().any() and df[a].nunique() == 1
    ]
    failed = len(df) - len(ok)
    note = f"; {failed} failed run(s) not shown" if failed else ""
    title = ", ".join(fixed) + note
    ax.set_title("\n".join(textwrap.wrap(title, 60)) or None, fontsize=8)
    ax.legend(
        handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
