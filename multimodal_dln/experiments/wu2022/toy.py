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


def _panel(ax, rows, curves, rho, field, alpha):
    for r in (r for r in rows if r["rho"] == rho):
        sel = [c for c in curves if c["rho"] == rho and c["Q"] == r["Q"] and c["t"] >= 0.5]
        # before t = 0.5 the prediction is ~0 and the rates are noise
        lab = "vanilla" if r["Q"] is None else f"balanced Q={r['Q']}"
        ls = "-" if r["Q"] is None else ("--" if r["Q"] == 1 else ":")
        ax.plot([c["t"] for c in sel], [c[field] for c in sel], ls, label=lab)
        col = ax.lines[-1].get_color()
        for t_x, sty in ((r["t_A"], "-"), (r["t_B"], "--")):
            if t_x:
                ax.axvline(t_x, color=col, alpha=0.35, lw=0.8, ls=sty)
    ax.set_xscale("log")
    if field == "d_speed":
        ax.set_yscale("symlog", linthresh=0.1)
        if alpha:
            for a in (alpha, -alpha):
                ax.axhline(a, color="gray", lw=0.5, ls=":")
    ax.set_title(f"rho = {rho:g}")
    ax.set_xlabel("t = steps x lr")
    ax.axhline(0, color="k", lw=0.5)


def plot_toy(rows, curves, out_dir, prefix: str = "greedy_toy"):
    """d_util(t) and d_speed(t) for every member (one panel per rho), gradient-flow time on a
    log axis. Writes `<prefix>_dutil.png` and `<prefix>_dspeed.png`; returns the paths."""
    out_dir = Path(out_dir)
    rhos = sorted({r["rho"] for r in rows}, reverse=True)
    alpha = next((r["alpha"] for r in rows if r["alpha"] is not None), None)
    paths = []
    for field, label, name in (
        ("d_util", "$d_{util}$", "dutil"),
        ("d_speed", "$d_{speed}$", "dspeed"),
    ):
        size = (4.2 * len(rhos), 3.4)
        share = field == "d_util"
        fig, axes = new_figure(size, 1, len(rhos), layout=None, squeeze=False, sharey=share)
        for ax, rho in zip(axes[0], rhos, strict=True):
            _panel(ax, rows, curves, rho, field, alpha)
        axes[0, 0].set_ylabel(label)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(
            f"{label}(t): two-layer late fusion, toy data (ratio 2), vanilla vs balanced "
            "(vertical lines: t_A solid, t_B dashed)",
            fontsize=10,
        )
        fig.tight_layout()
        paths.append(savefig(fig, out_dir / f"{prefix}_{name}.png", dpi=110))
    return paths
