"""Beyond the paper: minibatch noise (issue 13 item 4; docs/theory.md §10).

Two-layer late fusion on n samples of the toy data (ratio 2, rho = 0.5, no label noise, so SGD
converges to the same minimum as GD), one small random initialization shared by every run, SGD
with batch size b (shuffled epochs, `gradient_descent(..., batch_size=b, key=...)`) over many
seeds per b. Reported per b: the distribution of t_B / t_A (median, quartiles, standard
deviation) against full-batch GD (b = n, identical to SGD there) and gradient flow on the
sample's statistics, and A's delay t_A(SGD) / t_A(GD) against the leading-order
`theory.sgd_slowdown_two_layer`. The time ratio has no closed form here: its median shift and
spread are measured against the minibatch noise variance v = (n - b) / (b (n - 1)).
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
    gradient_descent,
    gradient_flow,
    measure,
    sample,
    theory,
)
from ..._minibatch import noise_scale
from .._plotting import new_figure
from .._style import COLORS, MARKS, NEUTRAL, legend, line_handle, mark_handle
from ._common import measurements

__all__ = ["plot_minibatch", "simulate_minibatch", "summarize_minibatch"]

RHO, RATIO, LR, INIT_SCALE, N_SAVE = 0.5, 2.0, 0.01, 1e-3, 2048


def _settings(quick: bool) -> dict:
    if quick:
        return {"n": 64, "batch_sizes": [1, 4, 16, 64], "seeds": 8, "width": 4}
    return {"n": 256, "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256], "seeds": 64,
            "width": 8}  # fmt: skip


def simulate_minibatch(ctx) -> dict:
    """SGD per batch size over seeds (one batch of identical networks, one key each), GD and
    gradient flow on the same sample."""
    cfg = _settings(ctx.quick)
    stats = Statistics.toy(RHO, RATIO)
    data = sample(jax.random.key(2024), stats, cfg["n"])
    emp = data.statistics()
    net = FusionDLN.init(jax.random.key(0), depth=2, fusion_layer=2, width=cfg["width"],
                         d_A=1, d_B=1, init_scale=INIT_SCALE)  # fmt: skip
    S = cfg["seeds"]
    nets = jax.tree.map(lambda a: jnp.broadcast_to(a, (S,) + a.shape) if eqx.is_array(a) else a,
                        net)  # fmt: skip
    keys = jax.random.split(jax.random.key(11), S)
    out = {"cfg": cfg, "sgd": {}, "slowdown": {}}
    for b in cfg["batch_sizes"]:
        ctx.log(f"minibatch-noise: b = {b}, {S} seeds")
        traj = gradient_descent(nets, data, lr=LR, batch_size=b, key=keys, n_save=N_SAVE)
        measured = measure(traj, emp)
        m = measurements(measured)
        m["status"] = [Status(int(c)).name for c in np.asarray(measured.status)]
        out["sgd"][b] = m
        out["slowdown"][b] = float(theory.sgd_slowdown_two_layer(data, LR, b))
    out["gd"] = measurements(measure(gradient_descent(net, data, lr=LR, n_save=N_SAVE), emp))
    out["flow"] = measurements(measure(gradient_flow(net, emp, n_save=N_SAVE), emp))
    return out


def summarize_minibatch(sim) -> tuple[list[dict], dict]:
    """One row per (b, seed), plus GD and gradient flow; the summary per b."""
    cfg = sim["cfg"]
    n = cfg["n"]
    gd, gf = float(sim["gd"]["time_ratio"]), float(sim["flow"]["time_ratio"])
    rows = []
    for b, m in sim["sgd"].items():
        for s in range(cfg["seeds"]):
            rows.append({
                "method": "sgd", "batch_size": b, "seed": s, "noise_var": _var(b, n),
                "t_A": float(m["t_A"][s]), "t_B": float(m["t_B"][s]),
                "time_ratio": float(m["time_ratio"][s]), "status": m["status"][s],
                "success": bool(m["success"][s]),
            })  # fmt: skip
    for method, r in (("gd", gd), ("flow", gf)):
        m = sim[method]
        rows.append({"method": method, "batch_size": n, "seed": -1, "noise_var": 0.0,
                     "t_A": float(m["t_A"]), "t_B": float(m["t_B"]), "time_ratio": r,
                     "status": "OK" if bool(m["success"]) else "FAILED",
                     "success": bool(m["success"])})  # fmt: skip
    t_A_gd, t_B_gd = float(sim["gd"]["t_A"]), float(sim["gd"]["t_B"])
    per_b = {}
    for b in cfg["batch_sizes"]:
        ok = [x for x in rows if x["method"] == "sgd" and x["batch_size"] == b and x["success"]]
        r = np.array([x["time_ratio"] for x in ok])
        q25, med, q75 = np.percentile(r, [25, 50, 75]) if r.size else (np.nan,) * 3
        t_A = np.median([x["t_A"] for x in ok]) if ok else np.nan
        t_B = np.median([x["t_B"] for x in ok]) if ok else np.nan
        per_b[str(b)] = {
            "noise_var": _var(b, n), "measured": int(r.size),
            "median": float(med), "q25": float(q25), "q75": float(q75),
            "std": float(r.std(ddof=1)) if r.size > 1 else None,
            "median_shift_vs_gd": float(med / gd - 1),
            "t_A_delay": float(t_A / t_A_gd - 1),
            "t_A_delay_theory": sim["slowdown"][b] - 1.0,
            "t_B_shift": float(t_B / t_B_gd - 1),
        }  # fmt: skip
    summary = {
        "settings": {"rho": RHO, "ratio": RATIO, "label_noise": 0.0, "n": n, "lr": LR,
                     "depth": 2, "fusion_layer": 2, "width": cfg["width"], "init": "random",
                     "init_scale": INIT_SCALE, "seeds": cfg["seeds"],
                     "batch_sizes": cfg["batch_sizes"], "sampling": "shuffled epochs",
                     "n_save": N_SAVE},  # fmt: skip
        "gd_time_ratio": gd,
        "flow_time_ratio": gf,
        "per_batch_size": per_b,
        "fits": _fits(per_b, n),
    }
    return rows, summary


def _var(b, n) -> float:
    return float(noise_scale(b, n)) ** 2


def _fits(per_b, n) -> dict:
    """Log-log slopes over b < n of the spread (std) and of |median shift| against the
    minibatch noise variance (n - b) / (b (n - 1)): measured exponents, no theory."""
    pts = [(v["noise_var"], v["std"], abs(v["median_shift_vs_gd"])) for b, v in per_b.items()
           if int(b) < n and v["std"] and v["median_shift_vs_gd"] != 0]  # fmt: skip
    if len(pts) < 2:
        return {}
    x = np.log([p[0] for p in pts])
    return {"std_vs_noise_var_slope": float(np.polyfit(x, np.log([p[1] for p in pts]), 1)[0]),
            "shift_vs_noise_var_slope": float(np.polyfit(x, np.log([p[2] for p in pts]), 1)[0]),
            "points": len(pts)}  # fmt: skip


def plot_minibatch(rows, summary):
    """Left: t_B / t_A per seed (faint dots) against b, the median with quartile bars, GD
    (dotted) and gradient flow (dashed). Right, against the minibatch noise variance (log-log):
    A's delay (median t_A / t_A(GD) - 1, circles; theory, line), the time ratio's |median
    shift| from GD (squares) and its spread (std / GD's ratio, faint dots)."""
    fig, (ax, ax2) = new_figure((8.4, 3.4), ncols=2)
    sgd = [r for r in rows if r["method"] == "sgd" and r["success"]]
    ax.plot([r["batch_size"] for r in sgd], [r["time_ratio"] for r in sgd], color=NEUTRAL,
            **MARKS["member"])  # fmt: skip
    per_b = summary["per_batch_size"]
    bs = np.array([int(b) for b in per_b])
    med = np.array([per_b[str(b)]["median"] for b in bs])
    lo = med - np.array([per_b[str(b)]["q25"] for b in bs])
    hi = np.array([per_b[str(b)]["q75"] for b in bs]) - med
    ax.errorbar(bs, med, yerr=[lo, hi], color="black", capsize=0, **MARKS["simulation"])
    ax.axhline(summary["gd_time_ratio"], color="black", **MARKS["reference"])
    ax.axhline(summary["flow_time_ratio"], color="black", **MARKS["prediction"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(bs, [str(b) for b in bs])
    ax.set_xlabel("batch size $b$")
    ax.set_ylabel("time ratio $t_B / t_A$")
    legend(ax, [mark_handle("member", "one seed"),
                mark_handle("simulation", "median, quartile bars", color="black"),
                line_handle(f"full-batch GD (b = n, lr {summary['settings']['lr']:g})",
                            color="black", ls=":", lw=1.0),
                line_handle("gradient flow", color="black", ls="--", lw=0.9)])  # fmt: skip
    keep = [str(b) for b in bs if per_b[str(b)]["noise_var"] > 0]
    v = np.array([per_b[b]["noise_var"] for b in keep])

    def pos(q):  # log axes: non-positive values (a delay of 0 or below) are left out
        y = np.array([per_b[b][q] for b in keep], float)
        return np.where(y > 0, y, np.nan)

    ax2.plot(v, pos("t_A_delay_theory"), color=COLORS["A"], **MARKS["theory"])
    ax2.plot(v, pos("t_A_delay"), color=COLORS["A"], **MARKS["simulation"])
    ax2.plot(v, np.abs([per_b[b]["median_shift_vs_gd"] for b in keep]), color="black",
             **MARKS["gd"])  # fmt: skip
    ax2.plot(v, pos("std") / summary["gd_time_ratio"], color="black", **MARKS["member"])
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("minibatch noise variance $v = (n - b) / (b (n - 1))$")
    ax2.set_ylabel("relative change from full-batch GD")
    legend(ax2, [line_handle("$t_A$ delay, theory", color=COLORS["A"]),
                 mark_handle("simulation", "$t_A$ delay (median)", color=COLORS["A"]),
                 mark_handle("gd", "$t_B / t_A$: |median shift|", color="black"),
                 mark_handle("member", "$t_B / t_A$: std over seeds", color="black")])  # fmt: skip
    return fig
