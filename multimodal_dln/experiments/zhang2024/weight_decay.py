"""Beyond the paper: weight decay in two-layer late and early fusion (issue 13 item 1;
docs/theory.md §8).

Toy data (ratio 2, rho in {0, 0.5}), two-layer networks (random init, u0 = 1e-12), trained by
gradient flow on J = L + lambda/2 ||theta||^2 at lambda / lambda_c from 0 to 1.5 (late fusion's
threshold lambda_c = r (1 - rho^2) / (r - rho) = 1 for both correlations), one batched solve per
fusion depth. Compared with the closed forms of `multimodal_dln.theory`: the final weights
(late fusion: a lasso, W_B = 0 at and above lambda_c; early fusion: a group lasso, both
modalities learned), the threshold (bracketed by the members on either side, and extrapolated
from the linear W_B(lambda) below it) and the leading-order time ratio
1 + (s_A - s_B) / (g_B - lambda (1 - kappa)).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ... import FusionDLN, Statistics, gradient_flow, measure, theory
from .._plotting import new_figure
from .._style import COLORS, MARKS, legend, line_handle, mark_handle, plain_log_y
from ._common import rel_stats

__all__ = ["plot_weight_decay", "simulate_weight_decay", "summarize_weight_decay"]

RATIO, U0, CONVERGE_RTOL = 2.0, 1e-12, 1e-10
_RHOS = (0.0, 0.5)
_FUSION = {2: "late", 1: "early"}


def _fractions(quick: bool) -> list[float]:
    """lambda / lambda_c of the simulated members (dense near the threshold)."""
    if quick:
        return [0.0, 0.25, 0.5, 0.75, 0.98, 1.02, 1.5]
    return [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.02, 1.1, 1.25, 1.5]


def simulate_weight_decay(ctx) -> dict:
    """Late and early fusion over the (rho x lambda) grid: two solves, each one batch."""
    fracs = _fractions(ctx.quick)
    width = 8 if ctx.quick else 100
    rho = jnp.array([r for r in _RHOS for _ in fracs])
    frac = jnp.array([f for _ in _RHOS for f in fracs])
    lam = frac * theory.weight_decay_threshold_toy(rho, RATIO)
    stats = jax.vmap(Statistics.toy)(rho, jnp.full_like(rho, RATIO))
    out = {"rho": np.asarray(rho), "frac": np.asarray(frac), "lam": np.asarray(lam),
           "width": width, "fracs": fracs}  # fmt: skip
    for lf, name in _FUSION.items():
        ctx.log(f"weight decay: {name} fusion, {rho.shape[0]} members")

        def make(k, lf=lf):
            return FusionDLN.init(k, depth=2, fusion_layer=lf, width=width, d_A=1, d_B=1,
                                  init_scale=U0, init="random")  # fmt: skip

        keys = jax.random.split(jax.random.key(lf), rho.shape[0])
        traj = gradient_flow(eqx.filter_vmap(make)(keys), stats, weight_decay=lam,
                             converge_rtol=CONVERGE_RTOL)  # fmt: skip
        m = measure(traj, stats)
        out[name] = {
            "W": np.asarray(traj.weights[:, -1, 0, :]),
            "W_theory": np.asarray(theory.weight_decay_solution(stats, lam, fusion_layer=lf))[
                :, 0, :
            ],
            "t_A": np.asarray(m.t_A),
            "t_B": np.asarray(m.t_B),
            "time_ratio": np.asarray(m.time_ratio),
            "run_ok": np.asarray(traj.success),
            "status": [s.split(";")[0] for s in m.failure_reasons()],
            "success": np.asarray(m.success),
        }
    out["theory_ratio"] = np.asarray(theory.time_ratio_weight_decay_toy(rho, RATIO, lam))
    return out


def _threshold(sim, rho) -> dict:
    """Late fusion's lambda_c measured two ways for one rho: the bracket between the largest
    lambda whose member learned B and the smallest whose member did not, and the zero of the
    straight line through the final W_B at 0.1-0.5 lambda_c (W_B is linear in lambda there)."""
    late, sel = sim["late"], sim["rho"] == rho
    lam_c = float(theory.weight_decay_threshold_toy(rho, RATIO))
    lam, w_B, ok = sim["lam"][sel], late["W"][sel, 1], late["success"][sel]
    learned = lam[ok & (w_B > 1e-6)]
    unlearned = lam[~ok & (np.abs(w_B) <= 1e-6)]
    fit = (lam / lam_c >= 0.1 - 1e-9) & (lam / lam_c <= 0.5 + 1e-9)
    extrap = None
    if fit.sum() >= 2:
        slope, icpt = np.polyfit(lam[fit], w_B[fit], 1)
        extrap = float(-icpt / slope)
    lo = float(learned.max()) if learned.size else None
    hi = float(unlearned.min()) if unlearned.size else None
    return {
        "theory": lam_c,
        "bracket": [lo, hi],
        "bracket_contains_theory": bool(lo is not None and hi is not None and lo < lam_c < hi),
        "bracket_rel_halfwidth": None if lo is None or hi is None else (hi - lo) / (2 * lam_c),
        "extrapolated": extrap,
        "extrapolated_rel_error": None if extrap is None else abs(extrap / lam_c - 1),
    }


def _with_end_point(sim):
    """The leading-order ratio plus the end of B's logistic, ln|W_B^lambda| / (2 rate_B t_A)
    with the measured t_A (docs/theory.md §8, "near the threshold"): the O(1) term that the
    vanishing rate rate_B = g_B - lambda (1 - kappa) magnifies near lambda_c."""
    rho, lam = sim["rho"], sim["lam"]
    rate = 1.0 - rho**2 - lam * (1.0 - rho / RATIO)
    w_B = np.abs(sim["late"]["W_theory"][:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.log(w_B) / (2.0 * rate * sim["late"]["t_A"])
    return np.where((rate > 0) & (w_B > 0), sim["theory_ratio"] + term, np.nan)


def summarize_weight_decay(sim) -> tuple[list[dict], dict]:
    """One row per simulated member (both fusion depths) with its theory; the summary holds the
    measured agreement: final weights, threshold, time ratio, statuses."""
    rows = []
    for name in _FUSION.values():
        r = sim[name]
        for i in range(len(sim["rho"])):
            rows.append({
                "fusion": name, "rho": sim["rho"][i], "ratio": RATIO, "lambda": sim["lam"][i],
                "lambda_over_lambda_c": sim["frac"][i],
                "W_A": r["W"][i, 0], "W_B": r["W"][i, 1],
                "W_A_theory": r["W_theory"][i, 0], "W_B_theory": r["W_theory"][i, 1],
                "t_A": r["t_A"][i], "t_B": r["t_B"][i], "time_ratio": r["time_ratio"][i],
                "theory_time_ratio": sim["theory_ratio"][i] if name == "late" else 1.0,
                "status": r["status"][i], "success": bool(r["success"][i]),
            })  # fmt: skip
    frac, late, early = sim["frac"], sim["late"], sim["early"]
    small = (frac > 0) & (frac <= 0.25 + 1e-9)
    t_A0 = {rho: late["t_A"][(sim["rho"] == rho) & (frac == 0)][0] for rho in _RHOS}
    s_A = RATIO**2 + sim["rho"] * RATIO
    growth = late["t_A"] / np.array([t_A0[r] for r in sim["rho"]])
    summary = {
        "settings": {"ratio": RATIO, "rho": list(_RHOS), "init": "random", "init_scale": U0,
                     "width": sim["width"], "converge_rtol": CONVERGE_RTOL,
                     "lambda_over_lambda_c": sim["fracs"]},  # fmt: skip
        "runs_converged": {k: int(sim[k]["run_ok"].sum()) for k in _FUSION.values()},
        "members": len(frac),
        "final_weights_max_abs_error": {
            k: float(np.abs(sim[k]["W"] - sim[k]["W_theory"]).max()) for k in _FUSION.values()
        },
        "threshold": {f"rho={rho:g}": _threshold(sim, rho) for rho in _RHOS},
        "late_time_ratio_vs_theory_lambda<=lambda_c/4": rel_stats(
            late["time_ratio"], sim["theory_ratio"], small
        ),
        "late_time_ratio_vs_theory_lambda=0": rel_stats(
            late["time_ratio"], sim["theory_ratio"], frac == 0
        ),
        "late_time_ratio_vs_theory_lambda<=lambda_c/2": rel_stats(
            late["time_ratio"], sim["theory_ratio"], (frac > 0) & (frac <= 0.5 + 1e-9)
        ),
        "late_t_A_growth_vs_s_A/(s_A-lambda)_lambda<=lambda_c/2": rel_stats(
            growth, s_A / (s_A - sim["lam"]), (frac > 0) & (frac <= 0.5 + 1e-9)
        ),
        "late_time_ratio_vs_theory_with_end_point_term_lambda>=lambda_c/2": rel_stats(
            late["time_ratio"], _with_end_point(sim), (frac >= 0.5 - 1e-9) & (frac < 1)
        ),
        "late_time_ratio_vs_theory_lambda>=lambda_c/2": rel_stats(
            late["time_ratio"], sim["theory_ratio"], (frac >= 0.5 - 1e-9) & (frac < 1)
        ),
        "early_learns_B_above_lambda_c": f"{int(early['success'][frac > 1].sum())} of "
        f"{int((frac > 1).sum())}",
        "late_learns_B_above_lambda_c": f"{int(late['success'][frac > 1].sum())} of "
        f"{int((frac > 1).sum())}",
        "early_time_ratio_range": [float(np.nanmin(early["time_ratio"])),
                                   float(np.nanmax(early["time_ratio"]))],  # fmt: skip
    }
    return rows, summary


def _theory_curves(rho):
    """lambda / lambda_c on a fine grid and the closed forms at it, for one rho."""
    x = np.linspace(0.0, 1.5, 301)
    lam_c = float(theory.weight_decay_threshold_toy(rho, RATIO))
    lam = jnp.asarray(x * lam_c)
    w_late = np.stack(theory.weight_decay_solution_toy(rho, RATIO, lam), axis=-1)
    stats = Statistics.toy(rho, RATIO)
    w_early = np.asarray(theory.weight_decay_solution(stats, lam, fusion_layer=1))[:, 0, :]
    ratio = np.asarray(theory.time_ratio_weight_decay_toy(rho, RATIO, lam))
    return x, w_late, w_early, np.where(np.isfinite(ratio), ratio, np.nan)


def plot_weight_decay(rows, summary=None):
    """Per correlation (one row of panels): the final weights against lambda / lambda_c (late
    fusion: solid lines and circles; early fusion: dashed lines and squares; A blue, B fuchsia)
    and the time ratio t_B / t_A (late fusion's diverges at lambda_c; early fusion's is 1)."""
    fig, axes = new_figure((8.2, 5.6), nrows=len(_RHOS), ncols=2)
    square = MARKS["simulation"] | {"marker": "s", "ms": 4}
    for row_axes, rho in zip(axes, _RHOS, strict=True):
        ax_w, ax_r = row_axes
        x, w_late, w_early, ratio = _theory_curves(rho)
        for j, m in enumerate("AB"):
            ax_w.plot(x, w_late[:, j], color=COLORS[m], **MARKS["theory"])
            ax_w.plot(x, w_early[:, j], color=COLORS[m], **MARKS["prediction"])
        ax_r.plot(x, ratio, color=COLORS["B"], **MARKS["theory"])
        ax_r.plot(x, np.ones_like(x), color=COLORS["A"], **MARKS["prediction"])
        for fusion, style in (("late", MARKS["simulation"]), ("early", square)):
            sel = [r for r in rows if r["fusion"] == fusion and r["rho"] == rho]
            xs = [r["lambda_over_lambda_c"] for r in sel]
            for m in "AB":
                ax_w.plot(xs, [r[f"W_{m}"] for r in sel], color=COLORS[m], **style)
            ax_r.plot(xs, [r["time_ratio"] for r in sel],
                      color=COLORS["B" if fusion == "late" else "A"], **style)  # fmt: skip
        for ax in (ax_w, ax_r):
            ax.axvline(1.0, color="0.35", **MARKS["reference"])
            ax.set_xlabel(r"weight decay $\lambda / \lambda_c$")
        ax_w.set_ylabel(f"final weight ($\\rho$ = {rho:g})")
        ax_r.set_ylabel(f"$t_B / t_A$ ($\\rho$ = {rho:g})")
        ax_r.set_ylim(0.8, 400)
        plain_log_y(ax_r)
    late_sim = mark_handle("simulation", "late fusion, simulated")
    early_sim = mark_handle("simulation", "early fusion, simulated", marker="s", ms=4)
    threshold = mark_handle("reference", r"threshold $\lambda_c$")
    legend(axes[0][0], [
        line_handle("$W_A$", COLORS["A"]), line_handle("$W_B$", COLORS["B"]),
        mark_handle("theory", "late fusion: lasso"),
        mark_handle("prediction", "early fusion: group lasso"), late_sim, early_sim, threshold,
    ], loc="lower left")  # fmt: skip
    legend(axes[0][1], [
        line_handle(r"late fusion: $1 + (s_A - s_B)/(g_B - \lambda(1-\kappa))$", COLORS["B"]),
        line_handle("early fusion: 1", COLORS["A"], ls="--", lw=0.9),
        mark_handle("simulation", "late fusion, simulated", color=COLORS["B"]),
        mark_handle("simulation", "early fusion, simulated", color=COLORS["A"], marker="s",
                    ms=4),
        threshold,
    ], loc="upper left")  # fmt: skip
    return fig
