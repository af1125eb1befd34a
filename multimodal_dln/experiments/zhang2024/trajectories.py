"""Two-layer early vs late fusion trajectories (F2/F3) and the theory heatmaps (F4a/b).

Trajectories: toy data, r = 2, rho in {0, 0.5, -0.5}; normalized loss, W_A / W_A(end) and
W_B / W_B(end) against the authors' epochs; late fusion's unimodal plateau sits at L(M_A) and
its phase times follow the leading-order formulas (docs/theory.md §2). Heatmaps: the closed
forms t_B / t_A = 1 + (r^2 - 1) / (1 - rho^2) and rho / r (docs/theory.md §2, §4).
"""

from __future__ import annotations

import numpy as np

from ... import theory
from .._plotting import COLORS, new_figure
from .._style import MARKS, TIME_LABEL, epochs_to_time, legend, line_handle, mark_handle
from ._common import AUTHORS_LR, entrywise_effective_scale, toy_runs, toy_settings

__all__ = [
    "plot_heatmaps",
    "plot_trajectories",
    "simulate_heatmaps",
    "simulate_trajectories",
    "summarize_heatmaps",
    "summarize_trajectories",
]

_RHOS = np.array([0.0, 0.5, -0.5])
_FUSIONS = ((2, "late"), (1, "early"))


def simulate_trajectories(ctx) -> dict:
    """Late and early fusion runs of the three toy statistics (r = 2), with the theory times at
    the entrywise init's effective scale."""
    cfg = toy_settings(ctx.quick)
    out = {"settings": cfg}
    u_eff = entrywise_effective_scale(cfg["init_scale"], cfg["width"])
    for Lf, name in _FUSIONS:
        stats, traj, m = toy_runs(ctx, _RHOS, np.full(3, 2.0), np.arange(3), fusion_layer=Lf)
        t_A, t_B = (np.asarray(a) for a in theory.phase_times_two_layer(stats, u_eff))
        out[name] = {
            "ts": np.asarray(traj.ts),
            "loss": np.asarray(traj.loss),
            "W_A": np.asarray(traj.W_A[:, :, 0, 0]),
            "W_B": np.asarray(traj.W_B[:, :, 0, 0]),
            "m": m,
            "t_A_theory": t_A,
            "t_B_theory": t_B,
        }
    return out


def _trajectory_rows(name, j, d) -> list[dict]:
    ts = d["ts"][j] / AUTHORS_LR
    loss, wa, wb = d["loss"][j], d["W_A"][j], d["W_B"][j]
    step = max(1, len(ts) // 200)
    return [
        {
            "fusion": name,
            "rho": _RHOS[j],
            "epoch": ts[k],
            "loss_normalized": loss[k] / loss[0],
            "W_A": wa[k],
            "W_B": wb[k],
        }
        for k in range(0, len(ts), step)
    ]


def summarize_trajectories(sim) -> tuple[list[dict], dict]:
    """Rows (every 200th of each trajectory) and measured vs theory times, plateau, W_A(t_uni)."""
    rows, summary = [], {"settings": sim["settings"]}
    for _, name in _FUSIONS:
        d = sim[name]
        m = d["m"]
        for j, rho in enumerate(_RHOS):
            rows += _trajectory_rows(name, j, d)
            summary[f"{name}_rho={rho:g}"] = {
                "t_A_epochs": float(m["t_A"][j] / AUTHORS_LR),
                "t_B_epochs": float(m["t_B"][j] / AUTHORS_LR),
                "t_A_theory_epochs": float(d["t_A_theory"][j] / AUTHORS_LR),
                "t_B_theory_epochs": float(d["t_B_theory"][j] / AUTHORS_LR),
                "time_ratio": float(m["time_ratio"][j]),
                "plateau_loss_ratio": float(m["plateau_loss"][j] / m["initial_loss"][j]),
                "plateau_theory": float(theory.plateau_loss_ratio_toy(rho, 2.0)),
                "W_A_at_t_uni": float(m["misattribution"][j].ravel()[0] + d["W_A"][j, -1]),
                "W_A_uni_theory": float(1 + rho / 2.0),
            }
    summary["note"] = (
        "theory times use the effective per-layer scale init * sqrt(width / 2) of the "
        "entrywise init (`entrywise_effective_scale`)"
    )
    return rows, summary


def plot_trajectories(rows, summary):
    """F2/F3: loss / L(0) (black), W_A / W_A(end) (blue), W_B / W_B(end) (fuchsia) against
    gradient-flow time t (the rows' epochs x AUTHORS_LR); late fusion: the leading-order t_A,
    t_B (dotted) and the plateau L(M_A) / L(0) (grey)."""
    fig, axes = new_figure((10.5, 5.6), 2, 3, sharex=True, sharey=True)
    t_hi = 0.0
    for row, (Lf, name) in enumerate(_FUSIONS):
        for j, rho in enumerate(_RHOS):
            sel = [r for r in rows if r["fusion"] == name and r["rho"] == rho]
            ts = epochs_to_time([r["epoch"] for r in sel])
            wa, wb = (np.array([r[k] for r in sel]) for k in ("W_A", "W_B"))
            s = summary[f"{name}_rho={rho:g}"]
            ax = axes[row, j]
            loss = [r["loss_normalized"] for r in sel]
            ax.plot(ts, loss, color=COLORS["loss"], lw=1.3)
            ax.plot(ts, wa / wa[-1], color=COLORS["A"], lw=1.3)
            ax.plot(ts, wb / wb[-1], color=COLORS["B"], lw=1.3)
            if Lf == 2:
                for key, c in (("t_A_theory_epochs", "A"), ("t_B_theory_epochs", "B")):
                    ax.axvline(float(epochs_to_time(s[key])), color=COLORS[c],
                               **MARKS["phase_time"])  # fmt: skip
                ax.axhline(s["plateau_theory"], color="0.6", lw=0.8)
            t_hi = max(t_hi, float(ts[-1]))
            ax.set_title(f"{name} fusion, $\\rho$ = {rho:g}", fontsize=9)
            if row == 1:
                ax.set_xlabel(TIME_LABEL, fontsize=8)
        axes[row, 0].set_ylabel("loss / $L(0)$;  $W^{tot}_m / W^{tot}_m$(end)", fontsize=8)
    axes[0, 0].set_xlim(0, min(float(epochs_to_time(1500.0)), t_hi))  # shared by all panels
    handles = [
        line_handle("loss / $L(0)$", COLORS["loss"], lw=1.3),
        line_handle("$W_A^{tot} / W_A^{tot}$(end)", COLORS["A"], lw=1.3),
        line_handle("$W_B^{tot} / W_B^{tot}$(end)", COLORS["B"], lw=1.3),
        mark_handle("phase_time", "theory $t_A$ (late fusion)", COLORS["A"]),
        mark_handle("phase_time", "theory $t_B$ (late fusion)", COLORS["B"]),
        line_handle("theory plateau $L(M_A)/L(0)$", "0.6", lw=0.8),
    ]
    legend(fig, handles, loc="outside right upper")
    return fig


# ------------------------------------------------------------------------------------------------
# heatmaps (F4a/b): pure theory
# ------------------------------------------------------------------------------------------------
def simulate_heatmaps(ctx) -> dict:
    """Nothing to simulate: the grid size (100 x 100; quick: 50 x 50)."""
    return {"n": 50 if ctx.quick else 100}


def summarize_heatmaps(sim) -> tuple[list[dict], dict]:
    """t_B / t_A (LogNorm) and misattribution rho / r on rho in [-0.92, 0.92], r in [1, 3]."""
    n = sim["n"]
    R, P = np.meshgrid(np.linspace(1.0, 3.0, n), np.linspace(-0.92, 0.92, n), indexing="ij")
    tr = np.asarray(theory.time_ratio_toy(P, R))
    mis = np.asarray(theory.misattribution_toy(P, R))
    rows = [
        {
            "ratio": R.flat[i],
            "rho": P.flat[i],
            "time_ratio": tr.flat[i],
            "misattribution": mis.flat[i],
        }
        for i in range(R.size)
    ]
    summary = {
        "max_time_ratio": float(tr.max()),
        "check_(r=3,rho=-0.92)": float(theory.time_ratio_toy(-0.92, 3.0)),
    }
    return rows, summary


def plot_heatmaps(rows, summary=None):
    """F4a (Greys, LogNorm) and F4b (RdGy) from the rows of `summarize_heatmaps`: each panel
    titled, its colour bar labelled."""
    from matplotlib.colors import LogNorm

    r = np.unique([x["ratio"] for x in rows])
    rho = np.unique([x["rho"] for x in rows])
    tr = np.array([x["time_ratio"] for x in rows]).reshape(len(r), len(rho))
    mis = np.array([x["misattribution"] for x in rows]).reshape(len(r), len(rho))
    fig, axes = new_figure((9.0, 3.5), 1, 2)
    im = axes[0].pcolormesh(rho, r, tr, norm=LogNorm(), cmap="Greys", shading="auto")
    fig.colorbar(im, ax=axes[0], label=r"time ratio $t_B/t_A$")
    axes[0].set_title(r"time ratio $1 + (r^2 - 1)/(1 - \rho^2)$ (theory)", fontsize=9)
    im = axes[1].pcolormesh(rho, r, mis, cmap="RdGy", vmin=-0.92, vmax=0.92, shading="auto")
    fig.colorbar(im, ax=axes[1], label=r"$W_A^{tot}(t_{uni}) - W_A^{tot}(\infty)$")
    axes[1].set_title(r"misattribution $\rho / r$ (theory)", fontsize=9)
    for ax in axes:
        ax.set_xlabel(r"correlation $\rho$")
        ax.set_ylabel(r"variance ratio $r = \sigma_A/\sigma_B$")
    return fig
