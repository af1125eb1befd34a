"""Deep fusion, L = 4 (F6a-d; docs/theory.md §3): loss curves and the time ratio against rho,
the variance ratio and the initialization, for every fusion layer L_f = 1..4.

One campaign (`simulate_deep`, cached per process) serves the four entries; deep-loss needs its
loss curves, so the campaign builds its inputs with the sweep engine (`sweeps.inputs`) and
integrates them here: per L_f, one batched gradient-flow solve of the aligned-init networks (the
theory's balanced rank-one start; member i has seed i) and the random-init networks (the
authors' deep Gaussian scheme, several seeds: member i's seed j is i k + j), and one batched
solve of the exact reduced dynamics; the integral formula and its phase times per member.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from ... import Status, sweeps, theory
from .._plotting import new_figure
from .._style import (
    MARKS,
    TIME_LABEL,
    epochs_to_time,
    legend,
    line_handle,
    mark_handle,
    plain_log_y,
    value_color,
    value_handle,
)
from ._common import AUTHORS_LR, CACHE, built, concat, failed_counts, flow, reduced, rel_stats

__all__ = [
    "deep_settings",
    "plot_deep",
    "plot_deep_loss",
    "simulate_deep",
    "summarize_deep",
    "summarize_deep_loss",
]

_X = {"rho": "rho", "ratio": "ratio", "init": "init_scale"}  # sweep -> row key of its x value


def deep_settings(quick: bool) -> dict:
    """The campaign's grid (full: the authors' sweeps, 5 random-init seeds, width 100, solved
    compacted)."""
    if quick:
        return {
            "rhos": [-0.9, -0.45, 0.0, 0.45, 0.9],
            "ratios": [1.2, 2.0, 2.8],
            "u0s": [0.03, 0.105, 0.18],
            "seeds": 1,
            "width": 16,
            "depth": 4,
            "init_scale": 0.1,
            "n_save": 1024,
        }
    return {
        "rhos": list(np.round(np.linspace(-0.9, 0.9, 9), 4)),
        "ratios": [1.2, 1.6, 2.0, 2.4, 2.8],
        "u0s": [0.03, 0.0675, 0.105, 0.1425, 0.18],
        "seeds": 5,
        "width": 100,
        "depth": 4,
        "init_scale": 0.1,
        "n_save": 1024,
        # compacted solves on a CPU (same steps and saves): one shot, the 114 members of one
        # L_f ran until the slowest (29 % of member-steps useful; 1.7x faster on the 2-core CPU,
        # L_f = 3). On a GPU a batched step of 1 or 1024 small members costs about the same
        # (benchmarks/results/README.md, H100 scaling), so dropping members saves nothing
        # there and would compile one program per pool size: one shot.
        "chunk_steps": 128 if jax.default_backend() == "cpu" else None,
    }


def _members(s) -> list[tuple]:
    """(sweep, rho, ratio, u0) per member: the rho, ratio and init sweeps one after another."""
    u_def = s["init_scale"]
    return (
        [("rho", float(rho), 2.0, u_def) for rho in s["rhos"]]
        + [("ratio", 0.0, float(r), u_def) for r in s["ratios"]]
        + [("init", 0.0, 2.0, float(u)) for u in s["u0s"]]
    )


def _one_fusion_layer(ctx, s, rho, ratio, u0, Lf) -> dict:
    """Aligned + random networks in one solve, the reduced dynamics, the formula (one L_f)."""
    t0 = time.time()
    L, M, k = s["depth"], len(u0), s["seeds"]
    net = sweeps.product(depth=L, fusion_layer=Lf, width=s["width"], n_save=s["n_save"])
    rep = lambda a: np.repeat(a, k)  # noqa: E731
    al = built(
        sweeps.zipped(rho=rho, ratio=ratio, init_scale=u0, seed=np.arange(M))
        * sweeps.product(init="aligned")
        * net
    )
    rnd = built(
        sweeps.zipped(rho=rep(rho), ratio=rep(ratio), init_scale=rep(u0), seed=np.arange(M * k))
        * sweeps.product(init="random")
        * net
    )
    n = M * (1 + k)
    traj, m = flow(
        concat([al.nets, rnd.nets]), concat([al.objective, rnd.objective]), n_save=s["n_save"],
        chunk_steps=s.get("chunk_steps"),
    )  # fmt: skip
    stats = al.stats
    _, rm = reduced(stats, depth=L, fusion_layer=Lf, u0=u0, n_save=s["n_save"])
    tA_f, tB_f = (np.asarray(a) for a in theory.phase_times_deep(stats, L, Lf, jnp.asarray(u0)))
    ctx.log(f"  L_f = {Lf}: {n} networks + {M} reduced solves in {time.time() - t0:.1f} s")
    return {
        "aligned": {key: v[0:M] for key, v in m.items()},
        "random": {key: v[M:n] for key, v in m.items()},
        "reduced": rm,
        "formula": np.asarray(theory.time_ratio_deep(stats, L, Lf, jnp.asarray(u0))),
        "t_A_formula": tA_f,
        "t_B_formula": tB_f,
        "loss_curves": {"ts": np.asarray(traj.ts), "loss": np.asarray(traj.loss)},
    }


def simulate_deep(ctx) -> dict:
    """All deep (L = 4) simulations, one batched solve per L_f (aligned + random members)."""
    key = ("deep", ctx.quick)
    if key in CACHE:
        return CACHE[key]
    s = deep_settings(ctx.quick)
    members = _members(s)
    rho, ratio, u0 = (np.array([m[j] for m in members]) for j in (1, 2, 3))
    res = {"settings": s, "members": members, "per_Lf": {}}
    for Lf in range(1, s["depth"] + 1):
        res["per_Lf"][Lf] = _one_fusion_layer(ctx, s, rho, ratio, u0, Lf)
    res["rho"], res["ratio"], res["u0"] = rho, ratio, u0
    CACHE[key] = res
    return res


# ------------------------------------------------------------------------------------------------
# deep-rho, deep-ratio, deep-init (F6b-d)
# ------------------------------------------------------------------------------------------------
def _rows_of(camp, Lf, i) -> list[dict]:
    """Member i at fusion layer L_f: formula, reduced, aligned and every random seed."""
    d, k = camp["per_Lf"][Lf], camp["settings"]["seeds"]
    base = {
        "L_f": Lf,
        "rho": camp["rho"][i],
        "ratio": camp["ratio"][i],
        "init_scale": camp["u0"][i],
    }

    def row(kind, m, j, **extra):
        out = {**base, "kind": kind, **extra, "time_ratio": m["time_ratio"][j]}
        out |= {"t_A": m["t_A"][j] / AUTHORS_LR, "t_B": m["t_B"][j] / AUTHORS_LR}
        if "success" not in m:  # the formula
            return out
        return out | {"success": m["success"][j], "status": Status(int(m["status"][j])).name}

    formula = {"time_ratio": d["formula"], "t_A": d["t_A_formula"], "t_B": d["t_B_formula"]}
    rows = [row("formula", formula, i), row("reduced", d["reduced"], i)]
    rows.append(row("aligned", d["aligned"], i))
    rows += [row("random", d["random"], i * k + s, seed=s) for s in range(k)]
    return rows


def _summary_of(camp, Lf, idx) -> dict:
    """Agreement of the networks, the reduced dynamics and the formula at one L_f (the gap is
    on (ratio - 1), the part the theory predicts; the formula is 1 for L_f = 1)."""
    d, k = camp["per_Lf"][Lf], camp["settings"]["seeds"]
    f, red = d["formula"][idx], d["reduced"]["time_ratio"][idx]
    al = d["aligned"]["time_ratio"][idx]
    rnd = d["random"]["time_ratio"].reshape(-1, k)[idx]
    rnd_ok = d["random"]["success"].reshape(-1, k)[idx]
    rnd_mean = np.nanmean(np.where(rnd_ok, rnd, np.nan), axis=1)
    return {
        "aligned_vs_formula": rel_stats(al, f, d["aligned"]["success"][idx]),
        "reduced_vs_formula (finite u0)": rel_stats(red, f, d["reduced"]["success"][idx]),
        "aligned_vs_reduced (integration)": rel_stats(al, red),
        "random_vs_reduced (random init)": rel_stats(rnd_mean, red),
        "random_vs_formula": rel_stats(rnd_mean, f),
        "t_A_aligned_vs_formula": rel_stats(d["aligned"]["t_A"][idx], d["t_A_formula"][idx]),
        "t_A_random_over_aligned_median": float(
            np.nanmedian(
                d["random"]["t_A"].reshape(-1, k)[idx].mean(axis=1) / d["aligned"]["t_A"][idx]
            )
        ),
    }


def summarize_deep(camp, sweep: str) -> tuple[list[dict], dict]:
    """Rows and agreement summary of one sweep ("rho", "ratio" or "init") of the campaign."""
    idx = [i for i, m in enumerate(camp["members"]) if m[0] == sweep]
    rows, summary = [], {"settings": camp["settings"]}
    for Lf in camp["per_Lf"]:
        for i in idx:
            rows += _rows_of(camp, Lf, i)
        summary[f"L_f={Lf}"] = _summary_of(camp, Lf, idx)
    # members without a phase time, counted by (L_f, kind, status)
    summary["failed"] = failed_counts(rows, lambda r: f"L_f={r['L_f']} {r['kind']}: {r['status']}")
    return rows, summary


def _theory_curve(sweep, Lf, x, u0):
    if sweep == "rho":
        return theory.time_ratio_deep_toy(4, Lf, x, 2.0, u0)
    if sweep == "ratio":
        return theory.time_ratio_deep_toy(4, Lf, 0.0, x, u0)
    return theory.time_ratio_deep_toy(4, Lf, 0.0, 2.0, x)


_DENSE = {
    "rho": (np.linspace(-0.92, 0.92, 93), r"correlation $\rho$"),
    "ratio": (np.linspace(1.0, 3.0, 81), r"variance ratio $\sigma_A/\sigma_B = \sqrt{k}$"),
    "init": (np.linspace(0.01, 0.2, 77), r"initialization $u_0$"),
}


def plot_deep(rows, summary, sweep: str):
    """F6b-d: the integral formula (lines), the reduced dynamics (dashed), aligned-init networks
    (open circles), random-init networks (open triangles); one colour per fusion layer
    (`_style.value_color`). Members that did not converge are not drawn (the title counts
    them)."""
    dense, xlabel = _DENSE[sweep]
    u0 = summary["settings"]["init_scale"]
    fig, ax = new_figure((5.6, 3.6))
    for Lf in (4, 3, 2, 1):
        c = value_color("fusion_layer", Lf)

        def pts(kind, ok_only=False, Lf=Lf):
            sel = [r for r in rows if r["L_f"] == Lf and r["kind"] == kind]
            sel = [r for r in sel if r["success"]] if ok_only else sel
            return [r[_X[sweep]] for r in sel], [r["time_ratio"] for r in sel]

        ax.plot(dense, _theory_curve(sweep, Lf, dense, u0), color=c, **MARKS["theory"])
        ax.plot(*pts("reduced"), color=c, **MARKS["reduced"])
        ax.plot(*pts("aligned", ok_only=True), color=c, **MARKS["aligned"])
        ax.plot(*pts("random", ok_only=True), color=c, **(MARKS["random_init"] | {"alpha": 0.8}))
    plain_log_y(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"time ratio $t_B/t_A$")
    failed = sum(1 for r in rows if r["kind"] in ("aligned", "random") and not r["success"])
    note = f"; {failed} network(s) without a measured phase time not drawn" if failed else ""
    fixed = {"rho": f"$\\sigma_A/\\sigma_B$ = 2, $u_0$ = {u0:g}",
             "ratio": f"$\\rho$ = 0, $u_0$ = {u0:g}",
             "init": "$\\rho$ = 0, $\\sigma_A/\\sigma_B$ = 2"}[sweep]  # fmt: skip
    ax.set_title(f"L = 4, {fixed}{note}", fontsize=8, wrap=True)
    handles = [value_handle("fusion_layer", Lf, ls="-", marker=None) for Lf in (4, 3, 2, 1)]
    handles += [
        mark_handle("theory", "integral formula (leading order)"),
        mark_handle("reduced", "reduced dynamics (finite $u_0$)"),
        mark_handle("aligned", "network, aligned init"),
        mark_handle("random_init", "network, random init (each seed)"),
    ]
    legend(ax, handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


# ------------------------------------------------------------------------------------------------
# deep-loss (F6a)
# ------------------------------------------------------------------------------------------------
def summarize_deep_loss(camp) -> tuple[list[dict], dict]:
    """Normalized loss curves at r = 2, rho = 0, u0 = 0.1 (random init: the first seed; aligned)
    and the phase times of both against the formula's t_A."""
    s = camp["settings"]
    i = [k for k, m in enumerate(camp["members"]) if m[0] == "rho" and m[1] == 0.0][0]
    M = len(camp["members"])
    rows = []
    for Lf in (4, 3, 2, 1):
        d = camp["per_Lf"][Lf]["loss_curves"]
        for kind, j in (("random", M + i * s["seeds"]), ("aligned", i)):
            ts, loss = d["ts"][j], d["loss"][j]
            rows += [
                {
                    "L_f": Lf,
                    "kind": kind,
                    "epoch": t / AUTHORS_LR,
                    "t": t,
                    "loss_normalized": v / loss[0],
                }
                for t, v in zip(ts, loss, strict=True)
            ]
    summary = {"settings": s, "plateau_theory": float(theory.plateau_loss_ratio_toy(0.0, 2.0))}
    for Lf in (4, 3, 2, 1):
        d = camp["per_Lf"][Lf]
        summary[f"L_f={Lf}"] = {
            "t_A_epochs_aligned": float(d["aligned"]["t_A"][i] / AUTHORS_LR),
            "t_B_epochs_aligned": float(d["aligned"]["t_B"][i] / AUTHORS_LR),
            "t_A_epochs_random": float(d["random"]["t_A"][i * s["seeds"]] / AUTHORS_LR),
            "t_B_epochs_random": float(d["random"]["t_B"][i * s["seeds"]] / AUTHORS_LR),
            "t_A_epochs_formula": float(d["t_A_formula"][i] / AUTHORS_LR),
        }
    return rows, summary


def plot_deep_loss(rows, summary):
    """F6a: loss / L(0) against gradient-flow time t, random init solid, aligned dashed, one
    colour per fusion layer; dotted: the plateau L(M_A) / L(M_0) = 0.2."""
    fig, ax = new_figure((5.6, 3.4))
    for Lf in (4, 3, 2, 1):
        for kind, ls in (("random", "-"), ("aligned", "--")):
            sel = [r for r in rows if r["L_f"] == Lf and r["kind"] == kind]
            ax.plot(epochs_to_time([r["epoch"] for r in sel]),
                    [r["loss_normalized"] for r in sel], ls=ls,
                    color=value_color("fusion_layer", Lf), lw=1.3)  # fmt: skip
    ax.axhline(summary["plateau_theory"], color="0.6", **MARKS["reference"])
    ax.set_xscale("log")
    ax.set_xlim(float(epochs_to_time(10.0)), None)
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("loss / initial loss")
    ax.set_title(r"L = 4, $\sigma_A/\sigma_B$ = 2, $\rho$ = 0, $u_0$ = 0.1", fontsize=9)
    handles = [value_handle("fusion_layer", Lf, ls="-", marker=None) for Lf in (4, 3, 2, 1)]
    handles += [
        line_handle("random init (first seed)", lw=1.3),
        line_handle("aligned init", ls="--", lw=1.3),
        line_handle(f"theory plateau $L(M_A)/L(0)$ = {summary['plateau_theory']:.2g}", "0.6",
                    **MARKS["reference"]),
    ]  # fmt: skip
    legend(ax, handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig
