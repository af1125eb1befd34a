"""Beyond the paper: convergence of the two-layer time ratio to the leading-order formula as
u0 -> 0 (docs/theory.md §2, §3, §7).

Two-layer late fusion, toy data, u0 from 1e-2 down to 1e-30 (float64): per (rho, ratio), the
full network from the balanced aligned init (squares; equal to the reduced dynamics), from the
authors' deep `random` scheme (per-layer norm u0, width 16, circles), the exact reduced dynamics
(line) and the first-order formula `phase_times_two_layer(order=1)` (dashed), as
|ratio / leading order - 1| against ln(1/u0): the error decays like c / ln(1/u0). All three
simulations are one `sweeps.run` (grid point i: aligned seed i, random seed n + i).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ... import Statistics, sweeps, theory
from .._plotting import new_figure
from .._style import MARKS, legend, line_handle, mark_handle
from ._common import measured, rel_stats, toy_settings

__all__ = ["plot_init_convergence", "simulate_init_convergence", "summarize_init_convergence"]

_PAIRS = [(0.5, 2.0), (-0.5, 2.0), (0.9, 1.5), (-0.9, 3.0), (0.45, 3.0)]


def _scales(quick: bool) -> list[float]:
    if quick:
        return [1e-2, 1e-4, 1e-8, 1e-16, 1e-30]
    return [1e-2, 1e-3, 1e-4, 1e-6, 1e-9, 1e-12, 1e-16, 1e-20, 1e-25, 1e-30]


def simulate_init_convergence(ctx) -> dict:
    """Aligned and random networks, the reduced dynamics (one `sweeps.run`) and the first-order
    formula on the (rho, ratio, u0) grid."""
    us = _scales(ctx.quick)
    grid = [(rho, r, u) for rho, r in _PAIRS for u in us]
    rho, ratio, u0 = (np.array([g[j] for g in grid]) for j in range(3))
    n = len(grid)
    cfg = toy_settings(ctx.quick)
    point = dict(rho=rho, ratio=ratio, init_scale=u0)
    net = sweeps.product(depth=2, fusion_layer=2, width=cfg["width"], n_save=cfg["n_save"])
    al, rn = sweeps.product(init="aligned"), sweeps.product(init="random")
    parts = {
        "aligned": sweeps.zipped(**point, seed=np.arange(n)) * al * net,
        "random": sweeps.zipped(**point, seed=n + np.arange(n)) * rn * net,
        "reduced": sweeps.zipped(**point) * sweeps.product(method="reduced", n_save=cfg["n_save"]),
    }
    df = sweeps.run(parts["aligned"] + parts["random"] + parts["reduced"], progress=False)
    m_al, m_rn, m_red = (measured(parts[k], df) for k in ("aligned", "random", "reduced"))
    stats = jax.vmap(Statistics.toy)(rho, ratio)
    tA1, tB1 = jax.vmap(lambda s, u: theory.phase_times_two_layer(s, u, order=1))(
        stats, jnp.asarray(u0)
    )
    return {
        "u0s": us,
        "rho": rho,
        "ratio": ratio,
        "u0": u0,
        "aligned": m_al,
        "random": m_rn,
        "reduced": m_red,
        "first_order": np.asarray(tB1 / tA1),
    }


def summarize_init_convergence(sim) -> tuple[list[dict], dict]:
    """One row per (rho, ratio, u0); agreements and the log-log slope of the reduced
    dynamics' error against ln(1/u0) (u0 <= 1e-8)."""
    rho, ratio, u0 = sim["rho"], sim["ratio"], sim["u0"]
    al, rn, red = (sim[k]["time_ratio"] for k in ("aligned", "random", "reduced"))
    first = sim["first_order"]
    lead = np.asarray(theory.time_ratio_toy(rho, ratio))
    rows = [
        {
            "rho": rho[i],
            "ratio": ratio[i],
            "init_scale": u0[i],
            "ln_1_over_u0": math.log(1 / u0[i]),
            "leading_order": lead[i],
            "first_order": first[i],
            "reduced": red[i],
            "sim_aligned": al[i],
            "sim_random": rn[i],
            "success_aligned": sim["aligned"]["success"][i],
            "success_random": sim["random"]["success"][i],
        }
        for i in range(len(rho))
    ]
    ell = np.log(1 / u0)
    small = u0 <= 1e-8
    slope = float(np.polyfit(np.log(ell[small]), np.log(np.abs(red / lead - 1)[small]), 1)[0])
    summary = {
        "pairs": _PAIRS,
        "u0": sim["u0s"],
        "aligned_vs_reduced": rel_stats(al, red, sim["aligned"]["success"]),
        "first_order_vs_reduced": rel_stats(first, red),
        "first_order_vs_reduced_u0<=1e-8": rel_stats(first, red, small),
        "random_vs_leading_at_1e-30": rel_stats(rn, lead, (u0 == 1e-30) & sim["random"]["success"]),
        "reduced_vs_leading_at_1e-30": rel_stats(red, lead, u0 == 1e-30),
        "reduced_vs_leading_at_1e-2": rel_stats(red, lead, u0 == 1e-2),
        "loglog_slope_error_vs_ln(1/u0)": slope,
    }
    return rows, summary


_PAIR_COLORS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00")
"""One fixed colour per (rho, ratio) pair of `_PAIRS` (keyed by the pair, not by position)."""


def plot_init_convergence(rows, summary=None):
    """|ratio / leading order - 1| against ln(1/u0) on log-log axes, one colour per (rho, r)
    pair: the reduced dynamics (solid), the first-order formula (dashed), the aligned-init
    network (open squares) and the authors' random init (open circles)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = new_figure((6.0, 3.6))
    colors = dict(zip(_PAIRS, _PAIR_COLORS, strict=True))
    handles = []
    for rr, ra in _PAIRS:
        c = colors[(rr, ra)]
        sel = [r for r in rows if r["rho"] == rr and r["ratio"] == ra]
        ell = [r["ln_1_over_u0"] for r in sel]

        def err(key, sel=sel, ok=None):
            return [abs(r[key] / r["leading_order"] - 1) if ok is None or r[ok] else np.nan
                    for r in sel]  # fmt: skip

        ax.plot(ell, err("reduced"), color=c, ls="-", lw=1.3)
        ax.plot(ell, err("first_order"), color=c, **MARKS["first_order"])
        ax.plot(ell, err("sim_aligned", ok="success_aligned"), color=c,
                **(MARKS["simulation"] | {"marker": "s"}))  # fmt: skip
        ax.plot(ell, err("sim_random", ok="success_random"), color=c,
                **(MARKS["random_init"] | {"marker": "o", "ms": 4}))  # fmt: skip
        handles.append(line_handle(f"$\\rho$ = {rr:g}, $r$ = {ra:g}", c, lw=1.3))
    handles += [
        line_handle("reduced dynamics (exact, finite $u_0$)"),
        mark_handle("first_order", "first-order formula"),
        mark_handle("simulation", "network, aligned init", marker="s"),
        mark_handle("random_init", "network, random init", marker="o", ms=4),
    ]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\ln(1/u_0)$")
    ax.set_xticks([5, 10, 20, 40, 70])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(r"$|(t_B/t_A)\,/\,$leading order$ - 1|$")
    ax.set_title("two-layer late fusion, toy data ($r = \\sigma_A/\\sigma_B$)", fontsize=9)
    legend(ax, handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig
