"""Vanilla vs balanced training of two-layer late fusion on the toy data (Wu et al. 2022's balanced
learning on the deep linear networks of Zhang et al. 2024; docs/theory.md §6), and its figures.

Ratio 2, width 100, entrywise init std 1e-9, population gradients, lr `AUTHORS_LR`, alpha
0.01, no warm-up, vanilla vs balanced (Q = 1, 5) for rho in {0.5, 0, -0.5}: t_A, t_B (first
crossings, in steps and in gradient-flow time steps x lr), lag, steps in the unimodal phase
(d_util < -0.9), inverted steps (d_util > 0), re-balancing steps, final d_util, loss and E_g;
figures of d_util(t) and d_speed(t).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import greedy, theory
from ..._constants import AUTHORS_LR
from .._plotting import new_figure, savefig
from .._style import TIME_LABEL, legend, line_handle, value_color
from ._common import WU2022_REFERENCE_TOY, ToySetting, run_row

__all__ = ["curve_rows", "plot_toy", "toy_experiment"]


def toy_experiment(
    setting: ToySetting = ToySetting(),
    *,
    n_steps: int = 40_000,
    count_window: int = 3000,
    n_save: int = 400,
):
    """Vanilla vs balanced training of two-layer late fusion on the toy data.

    Returns `(rows, run)`: one dict per member (times in steps and in gradient-flow units
    t = steps x lr; ``reference_t_A_steps`` / ``reference_t_B_steps`` from
    `WU2022_REFERENCE_TOY` in its settings) and the batched `GreedyRun`.
    """
    rows, stats, nets, a, q = setting.batch()
    lr = setting.lr
    run = greedy.train(
        nets,
        stats,
        lr=lr,
        n_steps=n_steps,
        algorithm="balanced",
        alpha=a,
        Q=q,
        n_save=n_save,
        save="log",
        count_window=count_window,
    )
    for i, r in enumerate(rows):
        r.update(run_row(run, i, lr))
        r["theory_ratio_vanilla"] = float(theory.time_ratio_toy(r["rho"], setting.ratio))
        ref = WU2022_REFERENCE_TOY.get((r["rho"], r["Q"])) if setting.is_reference else None
        r["reference_t_A_steps"], r["reference_t_B_steps"] = ref if ref else (None, None)
    return rows, run


def curve_rows(rows, run, lr: float = AUTHORS_LR) -> list[dict]:
    """The saved d_util(t), d_speed(t) of every member as rows (t = steps x lr), for the figures."""
    out = []
    for i, r in enumerate(rows):
        ts = np.asarray(run.steps[i]) * lr
        du, ds = np.asarray(run.d_util[i]), np.asarray(run.d_speed[i])
        out += [
            {"rho": r["rho"], "Q": r["Q"], "t": t, "d_util": u, "d_speed": s}
            for t, u, s in zip(ts, du, ds, strict=True)
        ]
    return out


def _run_name(q) -> str:
    return "vanilla" if q is None else f"balanced Q={q}"


def _panel(ax, rows, curves, rho, field, alpha):
    """One rho: every member's curve in its algorithm's colour (`_style.CATEGORY_COLORS`),
    its t_A (dotted) and t_B (dashed) as faint vertical lines of the same colour."""
    for r in (r for r in rows if r["rho"] == rho):
        sel = [c for c in curves if c["rho"] == rho and c["Q"] == r["Q"] and c["t"] >= 0.5]
        # before t = 0.5 the prediction is ~0 and the rates are noise
        col = value_color("algorithm", _run_name(r["Q"]))
        ax.plot([c["t"] for c in sel], [c[field] for c in sel], color=col, lw=1.4)
        for t_x, sty in ((r["t_A"], ":"), (r["t_B"], "--")):
            if t_x:
                ax.axvline(t_x, color=col, alpha=0.5, lw=0.9, ls=sty)
    ax.set_xscale("log")
    if field == "d_speed":
        ax.set_yscale("symlog", linthresh=0.1)
        if alpha:
            for a in (alpha, -alpha):
                ax.axhline(a, color="gray", lw=0.6, ls="-.")
    ax.set_title(f"$\\rho$ = {rho:g}", fontsize=10)
    ax.set_xlabel(TIME_LABEL)
    ax.axhline(0, color="k", lw=0.5)


def plot_toy(rows, curves, out_dir, prefix: str = "greedy_toy"):
    """d_util(t) and d_speed(t) for every member (one panel per rho) against gradient-flow time
    t = steps x lr on a log axis; the legend explains colours and lines. Writes
    `<prefix>_dutil.png` and `<prefix>_dspeed.png`; returns the paths."""
    out_dir = Path(out_dir)
    rhos = sorted({r["rho"] for r in rows}, reverse=True)
    alpha = next((r["alpha"] for r in rows if r["alpha"] is not None), None)
    runs = list(dict.fromkeys(_run_name(r["Q"]) for r in rows))
    paths = []
    for field, label, name in (
        ("d_util", "$d_{util}$", "dutil"),
        ("d_speed", "$d_{speed}$", "dspeed"),
    ):
        size = (3.9 * len(rhos) + 2.2, 3.4)
        share = field == "d_util"
        fig, axes = new_figure(size, 1, len(rhos), squeeze=False, sharey=share)
        for ax, rho in zip(axes[0], rhos, strict=True):
            _panel(ax, rows, curves, rho, field, alpha)
        for ax in axes[0] if not share else axes[0, :1]:
            ax.set_ylabel(label)
        handles = [line_handle(run, value_color("algorithm", run), lw=1.4) for run in runs]
        handles += [line_handle("$t_A$ (first crossing)", ls=":", lw=0.9),
                    line_handle("$t_B$ (first crossing)", ls="--", lw=0.9)]  # fmt: skip
        if field == "d_speed" and alpha:
            handles.append(line_handle(f"$\\pm\\alpha$ = $\\pm${alpha:g}", "gray", ls="-.",
                                       lw=0.6))  # fmt: skip
        legend(fig, handles, loc="outside right upper", fontsize=8)
        fig.suptitle(
            f"{label}(t): two-layer late fusion, toy data ($\\sigma_A/\\sigma_B$ = 2), "
            "vanilla vs balanced training",
            fontsize=10,
        )
        paths.append(savefig(fig, out_dir / f"{prefix}_{name}.png", dpi=110))
    return paths
