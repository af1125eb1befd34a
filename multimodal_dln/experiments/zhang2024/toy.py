"""Two-layer late fusion on the toy data: time ratio (F4c) and misattribution (F4d) against rho.

Both entries use one sweep of the sweep engine (`simulate_toy_sweep`: one `sweeps.run`, cached
per process): linear networks trained by gradient flow on the population statistics (and, full
mode, by the authors' gradient descent at lr `AUTHORS_LR`), and ReLU late fusion trained by
gradient flow on samples (a supplied `dataset=` batch; Zhang et al. 2024's nonlinear extension,
timed on the linear readout). Member i of each kind has network seed i; ReLU member i's samples
are drawn from the data stream of seed i (`multimodal_dln._seeding`). Theory: t_B / t_A =
1 + (r^2 - 1) / (1 - rho^2) and misattribution rho / r (docs/theory.md §2, §4).
"""

from __future__ import annotations

import jax
import numpy as np

from ... import Statistics, sample, sweeps, theory
from ..._seeding import DATA_STREAM, keys_for
from .._plotting import new_figure
from .._style import MARKS, legend, mark_handle, plain_log_y, value_color, value_handle
from ._common import AUTHORS_LR, CACHE, failed_counts, measured, rel_stats, toy_settings

__all__ = [
    "plot_misattribution",
    "plot_time_ratio",
    "simulate_time_ratio",
    "simulate_toy_sweep",
    "summarize_misattribution",
    "summarize_time_ratio",
    "toy_sweep_settings",
]

_DENSE = np.linspace(-0.92, 0.92, 93)


def toy_sweep_settings(quick: bool) -> dict:
    """Grid of the toy sweep (full: the paper's rho grid, 5 seeds; ReLU on 2048 samples)."""
    if quick:
        return {
            "ratios": [1.0, 1.5, 2.0, 3.0],
            "rhos": [-0.9, -0.45, 0.0, 0.45, 0.9],
            "seeds": 1,
            "relu_ratios": [1.5, 2.0, 3.0],
            "relu_rhos": [-0.9, 0.0, 0.9],
            "relu_width": 16,
            "relu_samples": 256,
            "relu_seeds": 1,
            "gd": False,
        }
    return {
        "ratios": [1.0, 1.5, 2.0, 3.0],
        "rhos": list(np.round(np.linspace(-0.9, 0.9, 9), 4)),
        "seeds": 5,
        "relu_ratios": [1.0, 1.5, 2.0, 3.0],
        "relu_rhos": list(np.round(np.linspace(-0.9, 0.9, 9), 4)),
        "relu_width": 100,
        "relu_samples": 2048,
        "relu_seeds": 1,
        "gd": True,
    }


def _grid(ratios, rhos, seeds):
    """(rho, ratio, seed) per member: every (ratio, rho) `seeds` times, member i with seed i."""
    g = [(r, rho) for r in ratios for rho in rhos for _ in range(seeds)]
    return np.array([x[1] for x in g]), np.array([x[0] for x in g]), np.arange(len(g))


def _toy_stats(rho, ratio) -> Statistics:
    """Toy statistics for theory curves (`Statistics.toy` per entry; docs/theory.md §1)."""
    return jax.vmap(Statistics.toy)(np.asarray(rho, float), np.asarray(ratio, float))


def _relu_data(s):
    """The ReLU members' samples: member i's drawn from the data stream of seed i."""
    r_rho, r_ratio, r_seed = _grid(s["relu_ratios"], s["relu_rhos"], s["relu_seeds"])
    stats = _toy_stats(r_rho, r_ratio)
    keys = keys_for(r_seed, DATA_STREAM)
    data = jax.vmap(lambda k, st: sample(k, st, s["relu_samples"]))(keys, stats)
    return (r_rho, r_ratio, r_seed), data


def _sweep(ctx, s) -> tuple[dict, sweeps.Sweep]:
    """The declared members: linear GF (and GD, full mode) per grid point, ReLU per dataset."""
    cfg = toy_settings(ctx.quick)
    rho, ratio, seeds = _grid(s["ratios"], s["rhos"], s["seeds"])
    net = dict(depth=2, fusion_layer=2, init="entrywise", init_scale=cfg["init_scale"])
    grid = sweeps.zipped(rho=rho, ratio=ratio, seed=seeds)
    parts = {"flow": grid * sweeps.product(width=cfg["width"], n_save=cfg["n_save"], **net)}
    if s["gd"]:
        gd = sweeps.product(method="gd", lr=AUTHORS_LR, width=cfg["width"], n_save=256, **net)
        parts["gd"] = grid * gd
    r_grid, data = _relu_data(s)
    relu = sweeps.product(activation="relu", width=s["relu_width"], n_save=1024, **net)
    parts["relu"] = sweeps.zipped(dataset=data, seed=r_grid[2]) * relu
    ctx.log(
        f"  linear gradient flow: {len(rho)} members, width {cfg['width']}, "
        f"init {cfg['init']} {cfg['init_scale']:g}"
        + (f"; gradient descent at lr {AUTHORS_LR} (the authors' optimizer)" if s["gd"] else "")
    )
    ctx.log(
        f"  ReLU gradient flow on {s['relu_samples']} samples: {len(r_grid[0])} members, "
        f"width {s['relu_width']}"
    )
    return {"grid": (rho, ratio, seeds), "relu_grid": r_grid, "data": data}, parts


def simulate_toy_sweep(ctx) -> dict:
    """Linear (gradient flow, and full mode the authors' GD) and ReLU toy sweeps in one
    `sweeps.run`, cached."""
    key = ("toy-sweep", ctx.quick)
    if key in CACHE:
        return CACHE[key]
    s = toy_sweep_settings(ctx.quick)
    info, parts = _sweep(ctx, s)
    whole = parts["flow"]
    for kind in ("gd", "relu"):
        whole = whole + parts[kind] if kind in parts else whole
    df = sweeps.run(whole, progress=False)
    out = {"settings": s, "grid": info["grid"], "relu_grid": info["relu_grid"]}
    out |= {kind: measured(sw, df) for kind, sw in parts.items()}
    emp = jax.vmap(lambda d: d.statistics())(info["data"])
    out["relu_emp_theory"] = np.asarray(theory.time_ratio_two_layer(emp))
    CACHE[key] = out
    return out


# ------------------------------------------------------------------------------------------------
# toy-time-ratio (F4c)
# ------------------------------------------------------------------------------------------------
def _ratio_row(kind, ratio, rho, seed, m, theory_, i) -> dict:
    """One CSV row of the toy time-ratio entry: member i of measurements `m` vs `theory_`."""
    return {
        "kind": kind,
        "ratio": ratio[i],
        "rho": rho[i],
        "seed": seed[i],
        "t_A": m["t_A"][i],
        "t_B": m["t_B"][i],
        "time_ratio": m["time_ratio"][i],
        "theory": theory_[i],
        "rel_error": m["time_ratio"][i] / theory_[i] - 1,
        "success": m["success"][i],
        "status": m["status"][i],
    }


def _time_ratio_rows(sw) -> list[dict]:
    rho, ratio, seeds = sw["grid"]
    th = np.asarray(theory.time_ratio_toy(rho, ratio))
    rows = []
    for kind in ("flow", "gd"):
        if kind in sw:
            rows += [_ratio_row(kind, ratio, rho, seeds, sw[kind], th, i) for i in range(len(rho))]
    r_rho, r_ratio, r_seed = sw["relu_grid"]
    r_theory = np.asarray(theory.time_ratio_toy(r_rho, r_ratio))
    for i in range(len(r_rho)):
        row = _ratio_row("relu", r_ratio, r_rho, r_seed, sw["relu"], r_theory, i)
        rows.append(row | {"theory_sample_stats": sw["relu_emp_theory"][i]})
    for r in sorted(set(ratio.tolist()) | set(r_ratio.tolist())):
        for x, y in zip(_DENSE, np.asarray(theory.time_ratio_toy(_DENSE, r)), strict=True):
            rows.append({"kind": "theory", "ratio": r, "rho": x, "theory": y})
    return rows


def _gd_summary(sw) -> dict:
    """GD against gradient flow and against the GD-corrected formula (docs/theory.md §2)."""
    rho, ratio, _ = sw["grid"]
    gd, fl = sw["gd"], sw["flow"]
    both = gd["success"] & fl["success"]
    gd_theory = np.asarray(theory.time_ratio_two_layer_gd(_toy_stats(rho, ratio), AUTHORS_LR))
    return {
        "gd_vs_flow_t_A": rel_stats(gd["t_A"], fl["t_A"], both),
        "gd_vs_flow_ratio": rel_stats(gd["time_ratio"], fl["time_ratio"], both),
        "gd_vs_gd_theory (ratio > 1)": rel_stats(
            gd["time_ratio"], gd_theory, gd["success"] & (ratio > 1.0)
        ),
        "gd_vs_flow_theory (ratio > 1)": rel_stats(
            gd["time_ratio"],
            np.asarray(theory.time_ratio_toy(rho, ratio)),
            gd["success"] & (ratio > 1.0),
        ),
    }


def simulate_time_ratio(ctx) -> dict:
    """The toy sweep (shared with the misattribution entry) and the two-layer settings."""
    return simulate_toy_sweep(ctx) | {"toy_settings": toy_settings(ctx.quick)}


def summarize_time_ratio(sw) -> tuple[list[dict], dict]:
    """Rows (every member, and the theory curves) and the agreement summary of F4c."""
    rows = _time_ratio_rows(sw)
    summary = {"settings": {**sw["settings"], **sw["toy_settings"]}}
    for kind in ("flow", "gd", "relu"):
        for label, keep in (
            ("", lambda r: r["ratio"] > 1.0),
            ("_ratio_1", lambda r: r["ratio"] == 1.0),
        ):
            sel = [r for r in rows if r["kind"] == kind and keep(r)]
            if sel:
                summary[kind + label] = rel_stats(
                    [r["time_ratio"] for r in sel],
                    [r["theory"] for r in sel],
                    [bool(r["success"]) for r in sel],
                )
    summary["note"] = (
        "ratio 1: no unimodal phase (equal drives); t_A = time ||W_A|| reaches ||W_A^uni||/2 = "
        "(1 + rho)/2 is then not a phase time, so these points are summarized separately"
    )
    if "gd" in sw:
        summary |= _gd_summary(sw)
    # members without a phase time, counted by (kind, ratio, status)
    summary["failed"] = failed_counts(
        rows, lambda r: f"{r['kind']} ratio {r['ratio']:g}: {r['status']}"
    )
    return rows, summary


def _rho_axes(ax, ratios, ylabel: str, theory_label: str) -> list:
    """Labels and title of a quantity against rho for the toy sweep, and the legend handles
    both of its figures start with (one colour per ratio, the theory line, the simulation)."""
    ax.set_xlabel(r"correlation $\rho$")
    ax.set_ylabel(ylabel)
    ax.set_title(r"two-layer late fusion, toy data ($r = \sigma_A/\sigma_B$)", fontsize=9)
    handles = [value_handle("ratio", r, ls="-", marker=None) for r in ratios]
    return handles + [mark_handle("theory", theory_label),
                      mark_handle("simulation", "linear, gradient flow")]  # fmt: skip


def plot_time_ratio(rows, summary=None):
    """F4c: theory (lines), gradient flow (open circles), GD (small squares; dotted: the
    GD-corrected formula), ReLU (crosses); one colour per variance ratio (`_style.value_color`).
    Failed members are not drawn."""
    fig, ax = new_figure((5.6, 3.6))
    ratios = sorted({r["ratio"] for r in rows})

    def pts(kind, r):
        sel = [x for x in rows if x["kind"] == kind and x["ratio"] == r and x["success"]]
        return [x["rho"] for x in sel], [x["time_ratio"] for x in sel]

    has = {k: any(x["kind"] == k for x in rows) for k in ("flow", "gd", "relu")}
    for r in ratios:
        c = value_color("ratio", r)
        ax.plot(_DENSE, theory.time_ratio_toy(_DENSE, r), color=c, **MARKS["theory"])
        ax.plot(*pts("flow", r), color=c, **MARKS["simulation"])
        if has["gd"]:
            ax.plot(*pts("gd", r), color=c, **MARKS["gd"])
            stats = _toy_stats(_DENSE, np.full_like(_DENSE, r))
            gd_th = theory.time_ratio_two_layer_gd(stats, AUTHORS_LR)
            ax.plot(_DENSE, gd_th, color=c, **MARKS["gd_theory"])
        ax.plot(*pts("relu", r), color=c, **MARKS["relu"])
    plain_log_y(ax)
    handles = _rho_axes(ax, ratios, r"time ratio $t_B/t_A$", "theory $1 + (r^2-1)/(1-\\rho^2)$")
    if has["gd"]:
        handles += [mark_handle("gd", f"linear, GD (lr {AUTHORS_LR:g})"),
                    mark_handle("gd_theory", "theory with GD correction")]  # fmt: skip
    if has["relu"]:
        handles.append(mark_handle("relu", "ReLU, gradient flow"))
    legend(ax, handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


# ------------------------------------------------------------------------------------------------
# misattribution (F4d)
# ------------------------------------------------------------------------------------------------
def summarize_misattribution(sw) -> tuple[list[dict], dict]:
    """W_A(t_uni) - W_A(inf) against rho / r (no unimodal phase at ratio 1: excluded)."""
    rows = []
    for kind, (rr, ra, sd), m in (
        ("flow", sw["grid"], sw["flow"]),
        ("relu", sw["relu_grid"], sw["relu"]),
    ):
        mis = m["misattribution"].reshape(len(rr), -1)[:, 0]
        rows += [
            {
                "kind": kind,
                "ratio": ra[i],
                "rho": rr[i],
                "seed": sd[i],
                "misattribution": mis[i],
                "theory": rr[i] / ra[i],
                "abs_error": mis[i] - rr[i] / ra[i],
                "success": m["success"][i],
            }
            for i in range(len(rr))
            if ra[i] > 1.0
        ]
    for r in (1.5, 2.0, 3.0):
        rows += [{"kind": "theory", "ratio": r, "rho": x, "theory": x / r} for x in _DENSE]
    summary = {"settings": sw["settings"]}
    for kind in ("flow", "relu"):
        sel = [r for r in rows if r["kind"] == kind and r["success"]]
        err = np.array([r["abs_error"] for r in sel])
        th_ = np.array([r["theory"] for r in sel])
        rel = np.abs(err) / np.maximum(np.abs(th_), 1e-12)
        nz = np.abs(th_) > 1e-9
        summary[kind] = {
            "n": len(sel),
            "max_abs_error": float(np.max(np.abs(err))) if len(sel) else None,
            "median_rel_error": float(np.median(rel[nz])) if nz.any() else None,
            "max_rel_error": float(np.max(rel[nz])) if nz.any() else None,
        }
    return rows, summary


def plot_misattribution(rows, summary=None):
    """F4d: theory rho / r (lines), gradient flow (open circles), ReLU (crosses); one colour
    per variance ratio (`_style.value_color`). Failed members are not drawn."""
    fig, ax = new_figure((5.6, 3.6))
    ratios = sorted({r["ratio"] for r in rows if r["kind"] == "theory"})
    for r in ratios:
        c = value_color("ratio", r)
        ax.plot(_DENSE, _DENSE / r, color=c, **MARKS["theory"])
        for kind, mark in (("flow", "simulation"), ("relu", "relu")):
            sel = [x for x in rows if x["kind"] == kind and x["ratio"] == r and x["success"]]
            x_, y_ = [x["rho"] for x in sel], [x["misattribution"] for x in sel]
            ax.plot(x_, y_, color=c, **MARKS[mark])
    ax.axhline(0, color="0.7", lw=0.5)
    ylabel = r"misattribution $W_A^{tot}(t_{uni}) - W_A^{tot}(\infty)$"
    handles = _rho_axes(ax, ratios, ylabel, "theory $\\rho / r$")
    if any(x["kind"] == "relu" for x in rows):
        handles.append(mark_handle("relu", "ReLU, gradient flow"))
    legend(ax, handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig
