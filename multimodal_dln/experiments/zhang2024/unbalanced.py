"""Beyond the paper: unbalanced ("lambda-balanced") starts in two-layer late fusion (issue 13
item 3; docs/theory.md §9).

Toy data (ratio 2, rho = 0.5; full size also rho = 0), aligned networks whose branches start at
the product u0^2 = 1e-12 with imbalance delta = a^2 - b^2 (second layer minus first;
`FusionDLN.init(..., layer_scales=theory.two_layer_scales(u0, delta))`), |delta| from 1e-14
(balanced in effect) to 10 (lazy), three series: equal imbalance on both modalities (both signs),
on A only and on B only. One batched gradient-flow solve and the per-layer reduced flow of the
same members, measured against `theory.phase_times_imbalanced` (leading order and order 1).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ... import (
    FusionDLN,
    Statistics,
    Status,
    gradient_flow,
    measure,
    reduced_flow,
    reduced_state_from_network,
    theory,
)
from .._plotting import new_figure
from .._style import COLORS, MARKS, NEUTRAL, legend, line_handle, mark_handle, plain_log_y
from ._common import measurements, rel_stats

__all__ = ["plot_unbalanced", "simulate_unbalanced", "summarize_unbalanced"]

RATIO, U0, N_SAVE, CONVERGE_RTOL = 2.0, 1e-6, 1024, 1e-10
SERIES = ("both", "A only", "B only")
_SERIES_COLORS = {"both": "0.15", "A only": COLORS["A"], "B only": COLORS["B"]}
_RICH, _LAZY = 1e-3, 1e-2  # |delta| <= 1e-3: rich (the theory's regime); >= 1e-2: towards lazy


def _deltas(quick: bool) -> list[float]:
    if quick:
        return [0.0, 1e-14, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0, 10.0]
    return [0.0] + [10.0**k for k in range(-14, 2)]


def _members(rhos, deltas):
    """(rho, series, delta_A, delta_B) per member: equal imbalance with both signs, and one
    modality at a time (delta > 0); delta = 0 once per rho."""
    out = []
    for rho in rhos:
        for d in deltas:
            if d == 0:
                out.append((rho, "both", 0.0, 0.0))
                continue
            out += [(rho, "both", d, d), (rho, "both", -d, -d)]
            out += [(rho, "A only", d, 0.0), (rho, "B only", 0.0, d)]
    return out


def simulate_unbalanced(ctx) -> dict:
    """Networks and reduced flow (one batch each) and the theory, for every member."""
    rhos = (0.5,) if ctx.quick else (0.0, 0.5)
    members = _members(rhos, _deltas(ctx.quick))
    rho = jnp.asarray([m[0] for m in members])
    dA, dB = (jnp.asarray([m[k] for m in members]) for k in (2, 3))
    stats = jax.vmap(Statistics.toy)(rho, jnp.full_like(rho, RATIO))
    rows = jnp.stack([theory.two_layer_scales(U0, dA), theory.two_layer_scales(U0, dB)], 1)
    width = 8 if ctx.quick else 32  # rank one: the width only sets the cost

    def make(k, s, r):
        kw = dict(depth=2, fusion_layer=2, width=width, d_A=1, d_B=1, init_scale=U0)
        return FusionDLN.init(k, **kw, init="aligned", align_to=s, layer_scales=r)

    nets = eqx.filter_jit(jax.vmap(make))(jax.random.split(jax.random.key(7), len(members)),
                                          stats, rows)  # fmt: skip
    ctx.log(f"unbalanced-init: {len(members)} networks, then their reduced flows")
    traj = gradient_flow(nets, stats, n_save=N_SAVE, converge_rtol=CONVERGE_RTOL)
    red = reduced_flow(stats, depth=2, fusion_layer=2, n_save=N_SAVE, converge_rtol=CONVERGE_RTOL,
                       state=eqx.filter_vmap(reduced_state_from_network)(nets),
                       t_max=traj.ts[:, -1])  # fmt: skip
    m_net = measure(traj, stats)
    out = {"members": members, "width": width, "rhos": list(rhos), "net": measurements(m_net),
           "red": measurements(measure(red, stats)),
           "net_status": [Status(int(c)).name for c in np.asarray(m_net.status)]}  # fmt: skip
    for order in (0, 1):
        t_A, t_B = theory.phase_times_imbalanced(stats, U0, dA, dB, order=order)
        out[f"theory{order}"] = (np.asarray(t_A), np.asarray(t_B))
    return out


def _reversal(rho) -> float:
    """B's imbalance (A balanced) at which the leading order has B learned first: the root of
    l_B / l_A = s_B / s_A (bisection in log |delta|)."""
    d = theory.drives_toy(rho, RATIO)
    target = float(d.s_B / d.s_A) * float(theory.imbalanced_log_scale(U0, 0.0))
    lo, hi = -30.0, 3.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(theory.imbalanced_log_scale(U0, 10.0**mid)) > target:
            lo = mid
        else:
            hi = mid
    return 10.0 ** (0.5 * (lo + hi))


def _lazy_ratio(rho) -> float:
    """t_B / t_A in the lazy limit |delta| -> infinity: each branch's product obeys
    dW/dt = |delta| e, linear regression, W(t) = W* (I - exp(-|delta| Sigma t)); the crossings of
    |W_A^uni| / 2 and W*_B / 2 (`measure`'s thresholds) found by bisection (docs/theory.md §9)."""
    s = Statistics.toy(rho, RATIO)
    sxx, w = np.asarray(s.sigma_xx), np.asarray(s.optimal_weights())[0]
    lam, vec = np.linalg.eigh(sxx)
    targets = (0.5 * abs(float(s.sigma_yxA[0, 0] / s.sigma_A[0, 0])), 0.5 * w[1])

    def first_crossing(j):
        def f(t):
            return (w - w @ vec @ np.diag(np.exp(-lam * t)) @ vec.T)[j] - targets[j]

        grid = np.geomspace(1e-6, 1e4, 2001)
        k = int(np.argmax([f(t) >= 0 for t in grid]))
        lo, hi = grid[k - 1], grid[k]
        for _ in range(200):
            lo, hi = (lo, 0.5 * (lo + hi)) if f(0.5 * (lo + hi)) >= 0 else (0.5 * (lo + hi), hi)
        return 0.5 * (lo + hi)

    return first_crossing(1) / first_crossing(0)


def summarize_unbalanced(sim) -> tuple[list[dict], dict]:
    """One row per member (network, reduced flow, theory); the summary holds the agreements."""
    members, net, red = sim["members"], sim["net"], sim["red"]
    (a0, b0), (a1, b1) = sim["theory0"], sim["theory1"]
    rows = []
    for i, (rho, series, dA, dB) in enumerate(members):
        rows.append({
            "rho": rho, "ratio": RATIO, "series": series, "delta_A": dA, "delta_B": dB,
            "abs_delta": max(abs(dA), abs(dB)), "t_A": net["t_A"][i], "t_B": net["t_B"][i],
            "time_ratio": net["time_ratio"][i], "reduced_t_A": red["t_A"][i],
            "reduced_t_B": red["t_B"][i], "reduced_time_ratio": red["time_ratio"][i],
            "theory0_t_A": a0[i], "theory0_t_B": b0[i], "theory0_time_ratio": b0[i] / a0[i],
            "theory1_t_A": a1[i], "theory1_t_B": b1[i], "theory1_time_ratio": b1[i] / a1[i],
            "status": sim["net_status"][i], "success": bool(net["success"][i]),
        })  # fmt: skip
    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    ok = col["success"]
    rich = ok & (col["abs_delta"] <= _RICH)
    lazy = ok & (col["abs_delta"] >= _LAZY)

    def agree(order, mask):
        return {q: rel_stats(col[q if q != "ratio" else "time_ratio"],
                             col[f"theory{order}_{q if q != 'ratio' else 'time_ratio'}"], mask)
                for q in ("t_A", "t_B", "ratio")}  # fmt: skip

    pos = {(m[0], abs(m[2])): i for i, m in enumerate(members) if m[1] == "both" and m[2] > 0}
    sym = [abs(col["t_B"][pos[(m[0], abs(m[2]))]] / col["t_B"][i] - 1)
           for i, m in enumerate(members) if m[1] == "both" and m[2] < 0 and ok[i]]  # fmt: skip
    summary = {
        "settings": {
            "ratio": RATIO,
            "rho": sim["rhos"],
            "init": "aligned",
            "init_scale": U0,
            "initial_product": U0**2,
            "width": sim["width"],
            "n_save": N_SAVE,
            "converge_rtol": CONVERGE_RTOL,
            "rich_if_abs_delta<=": _RICH,
            "lazy_if_abs_delta>=": _LAZY,
        },  # fmt: skip
        "members": len(members),
        "measured": int(ok.sum()),
        "statuses": {s: int(sum(st == s for st in col["status"])) for s in set(col["status"])},
        "network_vs_reduced": {
            q: rel_stats(col[q], col[f"reduced_{q}"], ok) for q in ("t_A", "t_B", "time_ratio")
        },  # fmt: skip
        "sign_symmetry_t_B_max": float(max(sym)) if sym else None,
        "order1_vs_network": _by_group(agree, 1, col, rich, lazy),
        "order0_vs_network": _by_group(agree, 0, col, rich, lazy),
        "B_only_reversal": _reversal_summary(col, sim["rhos"]),
        "lazy_limit": {f"rho={rho:g}": _lazy_summary(col, rho) for rho in sim["rhos"]},
    }
    return rows, summary


def _by_group(agree, order, col, rich, lazy) -> dict:
    """The theory's agreement per series and regime (rho = 0 apart: there order 1 is exact)."""
    coupled = col["rho"] != 0
    out = {"rho=0, every member": agree(order, (rich | lazy) & ~coupled)}
    for series in SERIES:
        here = coupled & (col["series"] == series)
        out[f"{series}, rich"] = agree(order, rich & here)
        out[f"{series}, lazy"] = agree(order, lazy & here)
    return out


def _reversal_summary(col, rhos) -> dict:
    """Per rho: the predicted B-only imbalance above which B is learned first, and the members
    on either side (the largest delta_B with t_B > t_A, the smallest flagged ORDER_REVERSED)."""
    out = {}
    for rho in rhos:
        sel = (col["rho"] == rho) & (col["series"] == "B only")
        fine = col["abs_delta"][sel & col["success"]]
        flipped = col["abs_delta"][sel & (col["status"] == "ORDER_REVERSED")]
        out[f"rho={rho:g}"] = {
            "predicted_delta_B": _reversal(rho),
            "largest_A_first": float(fine.max()) if fine.size else None,
            "smallest_B_first": float(flipped.min()) if flipped.size else None,
        }
    return out


def _lazy_summary(col, rho) -> dict:
    """The lazy-limit ratio against the equal-imbalance members at the largest |delta|."""
    sel = (col["rho"] == rho) & (col["series"] == "both") & col["success"]
    top = sel & (col["abs_delta"] == col["abs_delta"][sel].max())
    return {"limit": _lazy_ratio(rho), "largest_abs_delta": float(col["abs_delta"][sel].max()),
            "measured": [float(v) for v in col["time_ratio"][top]]}  # fmt: skip


def _theory_curve(rho, series, order):
    x = np.geomspace(1e-16, 30.0, 241)
    s = Statistics.toy(rho, RATIO)
    dA = x if series != "B only" else np.zeros_like(x)
    dB = x if series != "A only" else np.zeros_like(x)
    t_A, t_B = theory.phase_times_imbalanced(s, U0, jnp.asarray(dA), jnp.asarray(dB), order=order)
    return x, np.asarray(t_A), np.asarray(t_B)


def plot_unbalanced(rows, summary=None):
    """Per correlation (one row of panels): t_A and t_B against |delta| for equal imbalances
    (left), t_B / t_A for the three series (right); order-1 theory solid, leading order dashed,
    networks open circles (delta > 0) and squares (delta < 0), the balanced run dotted, the
    rich/lazy references |delta| = u0^2 and |W*| = 1 as grey dotted verticals, the lazy limit
    dash-dotted and B's reversal imbalance a fuchsia dotted vertical."""
    rhos = sorted({r["rho"] for r in rows})
    fig, axes = new_figure((8.4, 3.0 * len(rhos) + 0.6), nrows=len(rhos), ncols=2)
    axes = np.atleast_2d(axes)
    square = MARKS["simulation"] | {"marker": "s", "ms": 4}
    for (ax_t, ax_r), rho in zip(axes, rhos, strict=True):
        sel = [r for r in rows if r["rho"] == rho and r["success"]]
        zero = [r for r in sel if r["abs_delta"] == 0]
        for q, c in (("t_A", COLORS["A"]), ("t_B", COLORS["B"])):
            x, a0, b0 = _theory_curve(rho, "both", 0)
            _, a1, b1 = _theory_curve(rho, "both", 1)
            ax_t.plot(x, a1 if q == "t_A" else b1, color=c, **MARKS["theory"])
            ax_t.plot(x, a0 if q == "t_A" else b0, color=c, **MARKS["prediction"])
            for sign, style in ((1, MARKS["simulation"]), (-1, square)):
                pts = [r for r in sel if r["series"] == "both" and r["abs_delta"] > 0
                       and np.sign(r["delta_A"]) == sign]  # fmt: skip
                ax_t.plot([r["abs_delta"] for r in pts], [r[q] for r in pts], color=c, **style)
            for r in zero:
                ax_t.axhline(r[q], color=c, **MARKS["reference"])
        for series in SERIES:
            c = _SERIES_COLORS[series]
            x, a1, b1 = _theory_curve(rho, series, 1)
            _, a0, b0 = _theory_curve(rho, series, 0)
            ax_r.plot(x, b1 / a1, color=c, **MARKS["theory"])
            ax_r.plot(x, b0 / a0, color=c, **MARKS["prediction"])
            for sign, style in ((1, MARKS["simulation"]), (-1, square)):
                pts = [r for r in sel if r["series"] == series and r["abs_delta"] > 0
                       and np.sign(r["delta_A"] + r["delta_B"]) == sign]  # fmt: skip
                ax_r.plot([r["abs_delta"] for r in pts], [r["time_ratio"] for r in pts],
                          color=c, **style)  # fmt: skip
        for r in zero:
            ax_r.axhline(r["time_ratio"], color=NEUTRAL, **MARKS["reference"])
        ax_r.axhline(_lazy_ratio(rho), color=NEUTRAL, ls="-.", lw=1.0)
        ax_r.axvline(_reversal(rho), color=COLORS["B"], **MARKS["reference"])
        for ax in (ax_t, ax_r):
            ax.set_xscale("log")
            for v in (U0**2, 1.0):
                ax.axvline(v, color="0.6", **MARKS["reference"])
            ax.set_xlabel(r"imbalance $|\delta|$, $\delta = a^2 - b^2$")
        ax_t.set_ylabel(f"$t_A$, $t_B$ ($\\rho$ = {rho:g})")
        ax_t.set_yscale("log")
        ax_r.set_ylabel(f"$t_B / t_A$ ($\\rho$ = {rho:g})")
        ax_r.set_ylim(0.08, 300)
        plain_log_y(ax_r)
    legend(axes[0][0], [
        line_handle("$t_A$", COLORS["A"]), line_handle("$t_B$", COLORS["B"]),
        mark_handle("theory", "theory, order 1"), mark_handle("prediction", "leading order"),
        mark_handle("simulation", r"network, $\delta > 0$"),
        mark_handle("simulation", r"network, $\delta < 0$", marker="s", ms=4),
        mark_handle("reference", r"balanced run ($\delta = 0$)"),
        line_handle(r"$|\delta| = u_0^2$ and $|W^*| = 1$", "0.6", ls=":", lw=1.0),
    ], loc="lower left")  # fmt: skip
    names = {"both": "equal imbalance on A and B", "A only": "on A only", "B only": "on B only"}
    handles = [line_handle(names[s], _SERIES_COLORS[s]) for s in SERIES]
    handles += [line_handle("lazy limit (linear regression)", ls="-.", lw=1.0),
                line_handle("B learned first beyond (leading order)", COLORS["B"], ls=":",
                            lw=1.0)]  # fmt: skip
    legend(axes[0][1], handles, loc="upper left")
    return fig
