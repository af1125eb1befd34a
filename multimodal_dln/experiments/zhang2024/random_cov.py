"""Random inverse-Wishart covariances (F4e): theory vs simulation of t_B / t_A for D = 20,
d_A = d_B = 10, two-layer late fusion, gradient flow (docs/theory.md §2).

Two simulations per member, one `sweeps.run` (the statistics supplied as a batch, member i with
network seed i): the authors' entrywise init 1e-9 (full: width 100, quick: 8; the
authors used 50 data sets, we use 200; quick: 12), and a balanced aligned init at u0 = 1e-100,
which shows the convergence to the leading-order formula as u0 -> 0 (its error decays like
~3 / ln(1/u0), docs/reproduction.md). The finite-u0 prediction of the exact reduced dynamics
(`multimodal_dln.reduced_flow`, balanced start along the drives; docs/theory.md §3) at the
entrywise init's effective scale is recorded per member (full mode only). Also recorded: the
geometry behind the outliers, cos(Sigma_yxA, W_A^uni) and cos(Sigma_yxB, g_B), and
k_s = s_B / s_A.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ... import Statistics, sweeps, theory
from .._plotting import new_figure
from .._style import MARKS, legend, line_handle, mark_handle
from ._common import entrywise_effective_scale, measured, reduced, rel_stats

__all__ = [
    "plot_random_cov",
    "random_covariances",
    "simulate_random_cov",
    "summarize_random_cov",
]


def random_covariances(n: int, *, key: int = 2024, d_A: int = 10, d_B: int = 10, keep=(1.0, 20.0)):
    """The authors' random statistics (docs/theory.md §1): Sigma ~ InvWishart(d + 2,
    diag(2 I, I)), w* ~ U(-1, 1)^d, no noise. Members are relabelled so that A is learned
    first (`theory.orient_first_learned`) and, as in the authors' sweep, only predictions
    t_B/t_A in `keep` are kept; the first `n` such members are returned (with the predictions)."""
    cand = 4 * n
    stats = jax.jit(jax.vmap(lambda k: Statistics.random(k, d_A, d_B)))(
        jax.random.split(jax.random.key(key), cand)
    )
    stats, _ = theory.orient_first_learned(stats)
    pred = np.asarray(theory.time_ratio_two_layer(stats))
    sel = np.flatnonzero((pred >= keep[0]) & (pred <= keep[1]))[:n]
    return jax.tree.map(lambda a: a[sel], stats), pred[sel]


def _cos(a, b):
    return np.asarray(
        jnp.sum(a * b, axis=(-2, -1))
        / (jnp.linalg.norm(a, axis=(-2, -1)) * jnp.linalg.norm(b, axis=(-2, -1)))
    )


def simulate_random_cov(ctx) -> dict:
    """Both initializations in one `sweeps.run`, the reduced dynamics (full mode) and the
    members' geometry."""
    n = 12 if ctx.quick else 200
    width = 8 if ctx.quick else 100
    stats, pred = random_covariances(n)
    n = len(pred)
    ctx.log(f"  {n} random statistics; entrywise init 1e-9 (width {width}) and aligned 1e-100")
    per = sweeps.zipped(statistics=stats, seed=range(n))
    net = sweeps.product(depth=2, fusion_layer=2, width=width, n_save=512)
    ent = per * sweeps.product(init="entrywise", init_scale=1e-9) * net
    ali = per * sweeps.product(init="aligned", init_scale=1e-100) * net
    df = sweeps.run(ent + ali, progress=False)
    if ctx.quick:
        m_red = {"time_ratio": np.full(n, np.nan), "success": np.zeros(n, bool)}
    else:
        u_eff = entrywise_effective_scale(1e-9, width)
        _, m_red = reduced(stats, depth=2, fusion_layer=2, u0=u_eff, n_save=512, direction="drive")
    d = theory.drives(stats)
    w_uni = stats.unimodal_weights("A")
    g = stats.sigma_yxB - w_uni @ stats.sigma_AB
    return {
        "width": width,
        "pred": pred,
        "paper": measured(ent, df),
        "small": measured(ali, df),
        "reduced": m_red,
        "cos_A": _cos(stats.sigma_yxA, w_uni),
        "cos_B": _cos(stats.sigma_yxB, g),
        "k_s": np.asarray(d.s_B / d.s_A),
    }


def _median_or_none(x, sel):
    return float(np.median(x[sel])) if sel.any() else None


def _outliers(sim) -> dict:
    """Members of the entrywise run more than 10 % off the formula, and what they look like."""
    p, red, pred = sim["paper"], sim["reduced"], sim["pred"]
    out9 = (np.abs(p["time_ratio"] / pred - 1) > 0.1) & p["success"]
    return {
        "count_over_10pct": int(out9.sum()),
        "median_cos_A_outliers": _median_or_none(sim["cos_A"], out9),
        "median_cos_A_others": _median_or_none(sim["cos_A"], ~out9),
        "median_k_s_outliers": _median_or_none(sim["k_s"], out9),
        "median_k_s_others": _median_or_none(sim["k_s"], ~out9),
        "explained_by_reduced_within_10pct": int(
            np.sum(out9 & (np.abs(p["time_ratio"] / red["time_ratio"] - 1) < 0.1))
        ),
    }


def summarize_random_cov(sim) -> tuple[list[dict], dict]:
    """One row per member; agreement of each simulation with the formula and the reduced
    dynamics, Pearson correlation, and the outliers."""
    p, s, red, pred = sim["paper"], sim["small"], sim["reduced"], sim["pred"]
    rows = [
        {
            "member": i,
            "theory": pred[i],
            "sim_u0_1e-9": p["time_ratio"][i],
            "sim_u0_1e-100": s["time_ratio"][i],
            "reduced_u0_1e-9": red["time_ratio"][i],
            "rel_error_1e-9": p["time_ratio"][i] / pred[i] - 1,
            "rel_error_1e-100": s["time_ratio"][i] / pred[i] - 1,
            "success_1e-9": p["success"][i],
            "success_1e-100": s["success"][i],
            "cos_A": sim["cos_A"][i],
            "cos_B": sim["cos_B"][i],
            "k_s": float(sim["k_s"][i]),
        }
        for i in range(len(pred))
    ]
    ok = p["success"]
    summary = {
        "settings": {
            "n": len(pred),
            "width_entrywise": sim["width"],
            "lr_equivalent": 0.005,
            "keep": [1, 20],
        },
        "sim_u0_1e-9_vs_theory": rel_stats(p["time_ratio"], pred, ok),
        "sim_u0_1e-100_vs_theory": rel_stats(s["time_ratio"], pred, s["success"]),
        "reduced_u0_1e-9_vs_theory": rel_stats(red["time_ratio"], pred, red["success"]),
        "sim_u0_1e-9_vs_reduced_u0_1e-9": rel_stats(
            p["time_ratio"], red["time_ratio"], ok & red["success"]
        ),
        "pearson_u0_1e-9": float(np.corrcoef(pred[ok], p["time_ratio"][ok])[0, 1]),
        "outliers_u0_1e-9": _outliers(sim),
        "fraction_over_10pct_u0_1e-100": float(
            np.mean(np.abs(s["time_ratio"] / pred - 1)[s["success"]] > 0.1)
        ),
    }
    return rows, summary


def plot_random_cov(rows, summary=None):
    """F4e: simulation against theory for both initializations (open circles; failed members
    not drawn), axes 0-20 with the identity line."""
    fig, ax = new_figure((5.6, 3.8))
    handles = []
    for tag, color, label in (
        ("1e-9", "tab:gray", "entrywise init 1e-9"),
        ("1e-100", "k", "aligned init $u_0$ = 1e-100"),
    ):
        sel = [r for r in rows if r[f"success_{tag}"]]
        x, y = [r["theory"] for r in sel], [r[f"sim_u0_{tag}"] for r in sel]
        ax.plot(x, y, color=color, **(MARKS["simulation"] | {"ms": 4}))
        handles.append(mark_handle("simulation", f"simulation, {label}", color, ms=4))
    ax.plot([0, 20], [0, 20], color="tab:red", lw=1)
    handles.append(line_handle("simulation = theory", "tab:red", lw=1))
    ax.set_xlim(0, 20)
    ax.set_ylim(0, 20)
    ax.set_xlabel("time ratio $t_B/t_A$, theory (norm formula)")
    ax.set_ylabel("time ratio $t_B/t_A$, simulation")
    ax.set_title("random covariances, D = 20, two-layer late fusion", fontsize=9)
    legend(ax, handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig
