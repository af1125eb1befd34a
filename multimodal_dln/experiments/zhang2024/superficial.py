"""Superficial modality preference (F5; docs/theory.md §4).

Left: the prioritization boundary w_A* / w_B* = (sigma_A / sigma_B)^-2 (solid) and the
contribution boundary (sigma_A / sigma_B)^-1 (dashed); between them (red) the modality learned
first contributes less. Right: a trajectory in that region (sigma_A = 2, w* = (1.5, 4), rho = 0;
two-layer late fusion): the plateau sits at L(M_A) / L(M_0) = 0.64 although L(M_B) / L(M_0) =
0.36.
"""

from __future__ import annotations

import numpy as np

from ... import theory
from .._plotting import COLORS, new_figure
from .._style import TIME_LABEL, epochs_to_time, legend, line_handle, patch_handle
from ._common import AUTHORS_LR, toy_runs

__all__ = ["plot_superficial", "simulate_superficial", "summarize_superficial"]

_W = (1.5, 4.0)
_RATIO = 2.0


def simulate_superficial(ctx) -> dict:
    """One two-layer late-fusion run with teacher w* = (1.5, 4) at sigma_A / sigma_B = 2."""
    stats, traj, m = toy_runs(ctx, [0.0], [_RATIO], [0], w=_W)
    l0 = theory.fixed_point_loss(stats, "0")[0]
    return {
        "ts": np.asarray(traj.ts[0]),
        "loss": np.asarray(traj.loss[0]),
        "m": m,
        "L(M_A)/L(M_0)": float(theory.plateau_loss(stats)[0] / l0),
        "L(M_B)/L(M_0)": float(theory.plateau_loss(stats, "B")[0] / l0),
        "learned_first": ["A", "B"][int(theory.learned_first(stats)[0])],
    }


def summarize_superficial(sim) -> tuple[list[dict], dict]:
    """Rows: the two boundaries, then the loss curve; summary: plateau simulated vs L(M_A)."""
    x = np.linspace(0.02, 3.0, 300)
    pri = np.asarray(theory.prioritization_boundary(x))
    con = np.asarray(theory.contribution_boundary(x))
    ts, loss, m = sim["ts"] / AUTHORS_LR, sim["loss"], sim["m"]
    rows = [
        {"sigma_ratio": a, "prioritization": b, "contribution": c}
        for a, b, c in zip(x, pri, con, strict=True)
    ]
    rows += [{"epoch": a, "loss_normalized": b / loss[0]} for a, b in zip(ts, loss, strict=True)]
    summary = {
        "plateau_loss_ratio_sim": float(m["plateau_loss"][0] / m["initial_loss"][0]),
        "L(M_A)/L(M_0)": sim["L(M_A)/L(M_0)"],
        "L(M_B)/L(M_0)": sim["L(M_B)/L(M_0)"],
        "learned_first": sim["learned_first"],
        "superficial": bool(theory.superficial_preference(_W[0] / _W[1], _RATIO)),
    }
    return rows, summary


def plot_superficial(rows, summary):
    """F5: boundaries (left) and the loss trajectory with L(M_A), L(M_B) against gradient-flow
    time t (right)."""
    from matplotlib.lines import Line2D

    bnd = [r for r in rows if "sigma_ratio" in r]
    x = np.array([r["sigma_ratio"] for r in bnd])
    pri = np.array([r["prioritization"] for r in bnd])
    con = np.array([r["contribution"] for r in bnd])
    curve = [r for r in rows if "epoch" in r]
    fig, axes = new_figure((9.4, 3.4), 1, 2)
    ax = axes[0]
    ax.plot(x, pri, "k-")
    ax.plot(x, con, "k--")
    ax.fill_between(x, np.minimum(pri, con), np.maximum(pri, con), color="red", alpha=0.4, lw=0)
    ax.plot([_RATIO], [_W[0] / _W[1]], "k*", ms=8)
    ax.set_xlim(0.02, 3)
    ax.set_ylim(0, 3)
    ax.set_xlabel(r"variance ratio $\sigma_A/\sigma_B$")
    ax.set_ylabel(r"teacher weight ratio $w_A^*/w_B^*$")
    ax.set_title("which modality is learned first (theory)", fontsize=9)
    legend(ax, [
        line_handle("prioritization boundary $(\\sigma_A/\\sigma_B)^{-2}$", "k"),
        line_handle("contribution boundary $(\\sigma_A/\\sigma_B)^{-1}$", "k", ls="--"),
        patch_handle("learned first, contributes less", "red", alpha=0.4),
        Line2D([], [], ls="none", marker="*", ms=8, color="k",
               label=f"the run on the right, $w^*$ = {_W}"),
    ], loc="upper right")  # fmt: skip
    ax = axes[1]
    ts = epochs_to_time([r["epoch"] for r in curve])
    ax.plot(ts, [r["loss_normalized"] for r in curve], color=COLORS["loss"])
    la, lb = summary["L(M_A)/L(M_0)"], summary["L(M_B)/L(M_0)"]
    ax.axhline(la, color=COLORS["A"], ls=":", lw=1)
    ax.axhline(lb, color=COLORS["B"], ls=":", lw=1)
    ax.set_xlim(0, min(float(ts[-1]), float(epochs_to_time(400.0))))
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("loss / initial loss")
    ax.set_title(f"two-layer late fusion, $\\sigma_A/\\sigma_B$ = {_RATIO:g}, "
                 f"$w^*$ = {_W}, $\\rho$ = 0", fontsize=9)  # fmt: skip
    legend(ax, [
        line_handle("loss / $L(0)$", COLORS["loss"]),
        line_handle(f"theory $L(M_A)/L(0)$ = {la:.2f}", COLORS["A"], ls=":", lw=1),
        line_handle(f"theory $L(M_B)/L(0)$ = {lb:.2f}", COLORS["B"], ls=":", lw=1),
    ], loc="upper right")  # fmt: skip
    return fig
