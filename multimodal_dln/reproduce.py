"""Reproduce the figures of Zhang, Latham & Saxe (ICML 2024) from this package (digest section 3).

`reproduce(name, quick=..., out=...)` runs one entry, writes ``NAME.csv`` (every simulated
point and theory curve), ``NAME.png`` and ``NAME.json`` (the agreement summary) into `out`,
and returns a `Reproduction` (rows + summary + files). `reproduce_all` runs every entry;
`add_cli(subparsers)` registers ``mdln reproduce FIGURE [--quick] [--out DIR]``.

Conventions (digest 3): theory as lines, linear-network simulations as open circles, ReLU as
crosses; modality A blue, B fuchsia, loss black, E_g red; sweep colours from 'Set1'. Times are
gradient-flow times t (tau = 1); plots use the authors' epochs = t / lr with lr = 0.04.

`quick=True` runs small versions (narrow networks, fewer points and seeds) meant as a smoke
test of the whole pipeline (`reproduce all --quick` takes a few minutes on 2 CPU cores).
Full runs use the paper's parameters (widths 100, init 1e-9 for two-layer networks, 0.1 for
deep ones, 5 seeds, ...; per entry below) where the CPU budget allows; deviations are listed
in each entry's docstring and in its JSON summary ("settings").

Runs that share a network structure share one compiled solver: every batch is padded (by
repeating its last member) to a fixed size per structure, and entries that need the same
simulations (toy sweep: time ratio and misattribution; deep campaign: the four F6 panels) reuse
a per-process cache.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import theory as th
from ._dataset import Dataset, sample
from ._gradient_descent import gradient_descent
from ._gradient_flow import gradient_flow
from ._measurements import generalization_error_curve, measure
from ._network import FusionDLN
from ._statistics import Statistics

__all__ = [
    "FIGURES",
    "LR",
    "Reproduction",
    "add_cli",
    "entrywise_effective_scale",
    "random_covariances",
    "single_population",
    "xor_dataset",
    "main_reproduce",
    "reproduce",
    "reproduce_all",
]

LR = 0.04  # the authors' learning rate: epochs = t / LR (digest 1.3)
COLOR_A = "tab:blue"
COLOR_B = "fuchsia"
COLOR_LOSS = "black"
COLOR_EG = "red"


# ------------------------------------------------------------------------------------------------
# infrastructure
# ------------------------------------------------------------------------------------------------
@dataclass
class Reproduction:
    """What one entry produced: `rows` (also in NAME.csv), `summary` (NAME.json), `files`."""

    name: str
    rows: list[dict]
    summary: dict
    files: list[Path]
    seconds: float


@dataclass
class _Context:
    quick: bool
    out: Path
    log: Callable[[str], None]
    cache: dict = field(default_factory=dict)


_CACHE: dict = {}  # per-process cache of simulations shared between entries (keyed by settings)


def _plt():
    import matplotlib

    if (
        matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo")
        and not _interactive()
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _interactive() -> bool:
    try:
        import matplotlib

        return matplotlib.is_interactive()
    except Exception:  # pragma: no cover
        return False


def _set1(n):
    plt = _plt()
    cmap = plt.get_cmap("Set1")
    return [cmap(i % 9) for i in range(n)]


def _savefig(fig, path: Path, dpi: int = 110) -> Path:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return path


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic, jax.Array, np.ndarray)):
        a = np.asarray(obj)
        return _jsonable(a.tolist()) if a.ndim else _jsonable(a.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_csv(path: Path, rows: list[dict]) -> Path:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt_cell(r.get(k)) for k in cols})
    return path


def _fmt_cell(v):
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if math.isfinite(float(v)) else "nan"
    return v


def _rel_stats(sim, ref, mask=None) -> dict:
    """median / max of |sim / ref - 1| (and n) over finite members (and `mask`)."""
    sim, ref = np.asarray(sim, float), np.asarray(ref, float)
    ok = np.isfinite(sim) & np.isfinite(ref) & (ref != 0)
    if mask is not None:
        ok &= np.asarray(mask, bool)
    if not ok.any():
        return {"n": 0, "median": None, "max": None}
    rel = np.abs(sim[ok] / ref[ok] - 1)
    return {
        "n": int(ok.sum()),
        "median": float(np.median(rel)),
        "max": float(rel.max()),
        "p90": float(np.percentile(rel, 90)),
        "signed_median": float(np.median(sim[ok] / ref[ok] - 1)),
    }


def _pad(tree, size: int):
    """Pad every array leaf's leading axis to `size` by repeating the last member."""

    def pad(a):
        n = a.shape[0]
        if n >= size:
            return a
        return jnp.concatenate([a, jnp.repeat(a[-1:], size - n, axis=0)])

    return jax.tree.map(lambda a: pad(a) if eqx.is_array(a) else a, tree)


def _concat(trees):
    return jax.tree.map(lambda *a: jnp.concatenate(a) if eqx.is_array(a[0]) else a[0], *trees)


def _bucket(n: int, sizes=(8, 16, 32, 64, 128, 256, 512, 1024)) -> int:
    for s in sizes:
        if n <= s:
            return s
    return int(2 ** math.ceil(math.log2(n)))


def _nets(stats: Statistics, *, depth, fusion_layer, width, init, u0, seeds, activation="linear"):
    """One network per member: key = fold_in(key(seed), member index) (independent of padding)."""
    n = stats.sigma_xx.shape[0]
    seeds = np.broadcast_to(np.asarray(seeds), (n,))
    keys = jnp.stack([jax.random.fold_in(jax.random.key(int(s)), i) for i, s in enumerate(seeds)])
    u0 = jnp.broadcast_to(jnp.asarray(u0, float), (n,))
    return eqx.filter_vmap(
        lambda k, s, u: FusionDLN.init(
            k,
            depth=depth,
            fusion_layer=fusion_layer,
            width=width,
            d_A=stats.d_A,
            d_B=stats.d_B,
            init_scale=u,
            init=init,
            align_to=s if init == "aligned" else None,
            activation=activation,
        )
    )(keys, stats, u0)


def _np(m) -> dict:
    """PhaseMeasurements -> dict of NumPy arrays."""
    return {
        k: np.asarray(getattr(m, k))
        for k in (
            "t_A",
            "t_B",
            "time_ratio",
            "t_uni",
            "misattribution",
            "plateau_loss",
            "initial_loss",
            "final_loss",
            "success",
        )
    }


def _flow(nets, stats_or_data, *, n, size, n_save, t_max=None, converge_rtol=1e-6, stats=None):
    """Padded batched gradient flow + measurements, trimmed back to the n real members."""
    nets_p, obj_p = _pad(nets, size), _pad(stats_or_data, size)
    tm = None if t_max is None else _pad(jnp.broadcast_to(jnp.asarray(t_max, float), (n,)), size)
    traj = gradient_flow(nets_p, obj_p, n_save=n_save, t_max=tm, converge_rtol=converge_rtol)
    s = _pad(stats, size) if stats is not None else obj_p
    m = measure(traj, s)
    return traj[:n], _np(jax.tree.map(lambda a: a[:n], m))


def _reduced(stats, *, depth, fusion_layer, u0, n, size, n_save, direction="solution", t_max=None):
    s_p = _pad(stats, size)
    u_p = _pad(jnp.broadcast_to(jnp.asarray(u0, float), (n,)), size)
    tm = None if t_max is None else _pad(jnp.broadcast_to(jnp.asarray(t_max, float), (n,)), size)
    traj = th.reduced_flow(
        s_p,
        depth=depth,
        fusion_layer=fusion_layer,
        init_scale=u_p,
        direction=direction,
        n_save=n_save,
        t_max=tm,
    )
    m = measure(traj, s_p)
    return traj[:n], _np(jax.tree.map(lambda a: a[:n], m))


def entrywise_effective_scale(init: float, width: int) -> float:
    """Per-layer scale u0 of the balanced rank-one start that a two-layer branch with every
    entry N(0, init^2) and `width` hidden units behaves like at small init: the growing mode is
    (W2^T + W1) / sqrt(2), of squared norm ~ width init^2, so W^tot grows from ~ width init^2 / 2
    = u0^2 with u0 = init sqrt(width / 2) (width 100, init 1e-9: ln(1/u0) = 18.8, the digest's
    "effective ln(1/u0) ~ 18-19", 1.4). Only the log matters, to O(1) accuracy."""
    return float(init) * math.sqrt(width / 2.0)


def _toy_stats(rho, ratio, **kw) -> Statistics:
    rho, ratio = jnp.asarray(rho, float), jnp.asarray(ratio, float)
    return jax.vmap(lambda a, b: Statistics.toy(a, b, **kw))(rho, ratio)


# ------------------------------------------------------------------------------------------------
# two-layer toy simulations (digest 2.3, 2.4, F2-F5)
# ------------------------------------------------------------------------------------------------
def _toy_settings(quick: bool) -> dict:
    return {
        "width": 16 if quick else 100,
        "init": "entrywise",  # the authors' two-layer classes (digest 1.4)
        "init_scale": 1e-9,
        "batch": 128 if quick else 256,
        "n_save": 1024,
    }


def _toy_late(ctx, rho, ratio, seeds, *, u0=None, init=None, w=(1.0, 1.0), fusion_layer=2):
    """Two-layer toy runs (late fusion by default) in the shared padded batch."""
    cfg = _toy_settings(ctx.quick)
    u0 = cfg["init_scale"] if u0 is None else u0
    init = cfg["init"] if init is None else init
    stats = _toy_stats(rho, ratio, w_A=w[0], w_B=w[1])
    n = stats.sigma_xx.shape[0]
    nets = _nets(
        stats, depth=2, fusion_layer=fusion_layer, width=cfg["width"], init=init, u0=u0, seeds=seeds
    )
    size = cfg["batch"] if n <= cfg["batch"] else _bucket(n)
    if fusion_layer == 1:
        size = 8 if n <= 8 else _bucket(n)
    traj, m = _flow(nets, stats, n=n, size=size, n_save=cfg["n_save"])
    return stats, traj, m


def _toy_sweep_settings(quick):
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


def _toy_sweep(ctx) -> dict:
    """Linear (gradient flow and the authors' GD at lr 0.04) and ReLU toy sweeps, cached."""
    key = ("toy-sweep", ctx.quick)
    if key in _CACHE:
        return _CACHE[key]
    s = _toy_sweep_settings(ctx.quick)
    cfg = _toy_settings(ctx.quick)
    grid = [(r, rho, seed) for r in s["ratios"] for rho in s["rhos"] for seed in range(s["seeds"])]
    ratio = np.array([g[0] for g in grid])
    rho = np.array([g[1] for g in grid])
    seeds = np.array([g[2] for g in grid])
    ctx.log(
        f"  linear gradient flow: {len(grid)} members, width {cfg['width']}, "
        f"init {cfg['init']} {cfg['init_scale']:g}"
    )
    stats, traj, m = _toy_late(ctx, rho, ratio, seeds)
    out = {"settings": s, "grid": (rho, ratio, seeds), "flow": m}
    if s["gd"]:
        ctx.log("  gradient descent at lr 0.04 (the authors' optimizer)")
        nets = _nets(
            stats,
            depth=2,
            fusion_layer=2,
            width=cfg["width"],
            init=cfg["init"],
            u0=cfg["init_scale"],
            seeds=seeds,
        )
        n = len(grid)
        size = cfg["batch"] if n <= cfg["batch"] else _bucket(n)
        tr = gradient_descent(
            _pad(nets, size), _pad(stats, size), lr=LR, n_save=256, on_divergence="ignore"
        )
        out["gd"] = _np(jax.tree.map(lambda a: a[:n], measure(tr, _pad(stats, size))))
    # ReLU late fusion on samples (digest 2.9a): time measured on the linear readout.
    rgrid = [
        (r, rr, sd)
        for r in s["relu_ratios"]
        for rr in s["relu_rhos"]
        for sd in range(s["relu_seeds"])
    ]
    r_ratio = np.array([g[0] for g in rgrid])
    r_rho = np.array([g[1] for g in rgrid])
    r_seed = np.array([g[2] for g in rgrid])
    ctx.log(
        f"  ReLU gradient flow on {s['relu_samples']} samples: {len(rgrid)} members, "
        f"width {s['relu_width']}"
    )
    r_stats = _toy_stats(r_rho, r_ratio)
    keys = jnp.stack(
        [jax.random.fold_in(jax.random.key(10_000 + int(sd)), i) for i, sd in enumerate(r_seed)]
    )
    data = jax.vmap(lambda k, st: sample(k, st, s["relu_samples"]))(keys, r_stats)
    emp = jax.vmap(lambda d: d.statistics())(data)
    nets = _nets(
        r_stats,
        depth=2,
        fusion_layer=2,
        width=s["relu_width"],
        init="entrywise",
        u0=cfg["init_scale"],
        seeds=r_seed,
        activation="relu",
    )
    n = len(rgrid)
    _, rm = _flow(nets, data, n=n, size=_bucket(n), n_save=1024, converge_rtol=1e-5, stats=emp)
    out["relu"] = rm
    out["relu_grid"] = (r_rho, r_ratio, r_seed)
    out["relu_emp_theory"] = np.asarray(th.time_ratio_two_layer(emp))
    _CACHE[key] = out
    return out


def _ratio_row(kind, ratio, rho, seed, m, theory, i) -> dict:
    """One CSV row of the toy time-ratio entry: member i of measurements `m` vs `theory`."""
    return {
        "kind": kind,
        "ratio": ratio[i],
        "rho": rho[i],
        "seed": seed[i],
        "t_A": m["t_A"][i],
        "t_B": m["t_B"][i],
        "time_ratio": m["time_ratio"][i],
        "theory": theory[i],
        "rel_error": m["time_ratio"][i] / theory[i] - 1,
        "success": m["success"][i],
    }


def _fig_toy_time_ratio(ctx):
    """F4c: t_B / t_A vs rho for ratio in {1, 1.5, 2, 3}, two-layer late fusion (digest 2.3, 2.9a).

    Theory 1 + (r^2 - 1)/(1 - rho^2) (lines); gradient flow (open circles) from the authors'
    entrywise init 1e-9 (width 100; quick: 16) on the population statistics; the authors' GD at
    lr 0.04 (small squares, and dotted: `theory.time_ratio_two_layer_gd`, the same leading
    order with every rate s -> ln(1 + lr s)/lr; full mode only); ReLU late fusion trained by
    gradient flow on samples (crosses; full: 2048 samples, 1 seed, instead of the paper's 8192
    and 5: CPU budget), timed on its linear readout. The paper's 5 fresh data sets per point
    are replaced by the population statistics for the linear networks (theory's setting; no
    sampling noise).
    """
    sw = _toy_sweep(ctx)
    rho, ratio, seeds = sw["grid"]
    theory = np.asarray(th.time_ratio_toy(rho, ratio))
    rows = []
    for kind in ("flow", "gd"):
        if kind not in sw:
            continue
        rows += [_ratio_row(kind, ratio, rho, seeds, sw[kind], theory, i) for i in range(len(rho))]
    r_rho, r_ratio, r_seed = sw["relu_grid"]
    r_theory = np.asarray(th.time_ratio_toy(r_rho, r_ratio))
    for i in range(len(r_rho)):
        row = _ratio_row("relu", r_ratio, r_rho, r_seed, sw["relu"], r_theory, i)
        rows.append(row | {"theory_sample_stats": sw["relu_emp_theory"][i]})
    dense = np.linspace(-0.92, 0.92, 93)
    ratios = sorted(set(ratio.tolist()) | set(r_ratio.tolist()))
    for r in ratios:
        for x, y in zip(dense, np.asarray(th.time_ratio_toy(dense, r)), strict=True):
            rows.append({"kind": "theory", "ratio": r, "rho": x, "theory": y})
    summary = {"settings": {**sw["settings"], **_toy_settings(ctx.quick)}}
    for kind in ("flow", "gd", "relu"):
        for label, keep in (
            ("", lambda r: r["ratio"] > 1.0),
            ("_ratio_1", lambda r: r["ratio"] == 1.0),
        ):
            sel = [r for r in rows if r["kind"] == kind and keep(r)]
            if sel:
                summary[kind + label] = _rel_stats(
                    [r["time_ratio"] for r in sel],
                    [r["theory"] for r in sel],
                    [bool(r["success"]) for r in sel],
                )
    summary["note"] = (
        "ratio 1: no unimodal phase (equal drives); t_A = time ||W_A|| reaches ||W_A^uni||/2 = "
        "(1 + rho)/2 is then not a phase time, so these points are summarized separately"
    )
    gd, fl = sw.get("gd"), sw["flow"]
    if gd is not None:
        summary["gd_vs_flow_t_A"] = _rel_stats(gd["t_A"], fl["t_A"], gd["success"] & fl["success"])
        summary["gd_vs_flow_ratio"] = _rel_stats(
            gd["time_ratio"], fl["time_ratio"], gd["success"] & fl["success"]
        )
        gd_theory = np.asarray(th.time_ratio_two_layer_gd(_toy_stats(rho, ratio), LR))
        summary["gd_vs_gd_theory (ratio > 1)"] = _rel_stats(
            gd["time_ratio"], gd_theory, gd["success"] & (ratio > 1.0)
        )
        summary["gd_vs_flow_theory (ratio > 1)"] = _rel_stats(
            gd["time_ratio"], theory, gd["success"] & (ratio > 1.0)
        )
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    cols = dict(zip(ratios[::-1], _set1(len(ratios)), strict=True))
    for r in ratios:
        ax.plot(
            dense,
            th.time_ratio_toy(dense, r),
            color=cols[r],
            lw=1.5,
            label=f"$\\sigma_A/\\sigma_B$ = {r:g}",
        )
        sel = ratio == r
        ok = fl["success"][sel]
        ax.plot(rho[sel][ok], fl["time_ratio"][sel][ok], "o", mfc="none", color=cols[r], ms=5)
        if gd is not None:
            ax.plot(
                rho[sel], gd["time_ratio"][sel], "s", mfc="none", color=cols[r], ms=3, alpha=0.7
            )
            gd_line = th.time_ratio_two_layer_gd(_toy_stats(dense, np.full_like(dense, r)), LR)
            ax.plot(dense, gd_line, ":", color=cols[r], lw=0.8)
        rs = r_ratio == r
        ax.plot(r_rho[rs], sw["relu"]["time_ratio"][rs], "x", color=cols[r], ms=6)
    ax.set_yscale("log")
    ax.set_xlabel(r"correlation $\rho$")
    ax.set_ylabel(r"time ratio $t_B/t_A$")
    ax.set_title("two-layer late fusion: lines theory, o GF, □ GD, × ReLU", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return rows, summary, fig


def _fig_misattribution(ctx):
    """F4d: misattribution W_A(t_uni) - W_A(inf) vs rho; theory rho / ratio (digest 2.4).
    Same runs as `toy-time-ratio` (no unimodal phase at ratio 1: excluded)."""
    sw = _toy_sweep(ctx)
    rho, ratio, seeds = sw["grid"]
    rows = []
    for kind, (rr, ra, sd), m in (
        ("flow", (rho, ratio, seeds), sw["flow"]),
        ("relu", sw["relu_grid"], sw["relu"]),
    ):
        mis = m["misattribution"].reshape(len(rr), -1)[:, 0]
        for i in range(len(rr)):
            if ra[i] <= 1.0:
                continue
            rows.append(
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
            )
    dense = np.linspace(-0.92, 0.92, 93)
    for r in (1.5, 2.0, 3.0):
        for x in dense:
            rows.append({"kind": "theory", "ratio": r, "rho": x, "theory": x / r})
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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    cols = dict(zip((3.0, 2.0, 1.5), _set1(3), strict=True))
    for r in (1.5, 2.0, 3.0):
        ax.plot(dense, dense / r, color=cols[r], lw=1.5, label=f"$\\sigma_A/\\sigma_B$ = {r:g}")
        for kind, mk in (("flow", "o"), ("relu", "x")):
            sel = [x for x in rows if x["kind"] == kind and x["ratio"] == r and x["success"]]
            ax.plot(
                [x["rho"] for x in sel],
                [x["misattribution"] for x in sel],
                mk,
                mfc="none" if mk == "o" else None,
                color=cols[r],
                ms=5,
            )
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set_xlabel(r"correlation $\rho$")
    ax.set_ylabel(r"$W_A^{tot}(t_{uni}) - W_A^{tot}(\infty)$")
    ax.set_title(r"misattribution: lines $\rho/(\sigma_A/\sigma_B)$, o GF, × ReLU", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return rows, summary, fig


def _fig_heatmap(ctx):
    """F4a, F4b: theory heatmaps of t_B/t_A = 1 + (r^2 - 1)/(1 - rho^2) (LogNorm, Greys) and of the
    misattribution rho / r (RdGy) on rho in [-0.92, 0.92], r in [1, 3] (digest 3 F4)."""
    from matplotlib.colors import LogNorm

    n = 50 if ctx.quick else 100
    rho = np.linspace(-0.92, 0.92, n)
    r = np.linspace(1.0, 3.0, n)
    R, P = np.meshgrid(r, rho, indexing="ij")
    tr = np.asarray(th.time_ratio_toy(P, R))
    mis = np.asarray(th.misattribution_toy(P, R))
    rows = [
        {
            "ratio": R.flat[i],
            "rho": P.flat[i],
            "time_ratio": tr.flat[i],
            "misattribution": mis.flat[i],
        }
        for i in range(R.size)
    ]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8.2, 3.2))
    im = axes[0].pcolormesh(rho, r, tr, norm=LogNorm(), cmap="Greys", shading="auto")
    fig.colorbar(im, ax=axes[0], label=r"$t_B/t_A$")
    im = axes[1].pcolormesh(rho, r, mis, cmap="RdGy", vmin=-0.92, vmax=0.92, shading="auto")
    fig.colorbar(im, ax=axes[1], label="misattribution")
    for ax in axes:
        ax.set_xlabel(r"$\rho$")
        ax.set_ylabel(r"$\sigma_A/\sigma_B$")
    summary = {
        "max_time_ratio": float(tr.max()),
        "check_(r=3,rho=-0.92)": float(th.time_ratio_toy(-0.92, 3.0)),
    }
    return rows, summary, fig


# ------------------------------------------------------------------------------------------------
# random covariances (F4e)
# ------------------------------------------------------------------------------------------------
def random_covariances(n: int, *, key: int = 2024, d_A: int = 10, d_B: int = 10, keep=(1.0, 20.0)):
    """The paper's random statistics (digest 1.1 'rand_sweep'): Sigma ~ InvWishart(d + 2,
    diag(2 I, I)), w* ~ U(-1, 1)^d, no noise. Members are relabelled so that A is learned
    first (`theory.orient_first_learned`) and, as in the authors' sweep, only predictions
    t_B/t_A in `keep` are kept; the first `n` such members are returned (with the predictions)."""
    cand = 4 * n
    stats = jax.jit(jax.vmap(lambda k: Statistics.random(k, d_A, d_B)))(
        jax.random.split(jax.random.key(key), cand)
    )
    stats, _ = th.orient_first_learned(stats)
    pred = np.asarray(th.time_ratio_two_layer(stats))
    sel = np.flatnonzero((pred >= keep[0]) & (pred <= keep[1]))[:n]
    return jax.tree.map(lambda a: a[sel], stats), pred[sel]


def _fig_random_cov(ctx):
    """F4e: theory vs simulation of t_B/t_A for random inverse-Wishart statistics (D = 20,
    d_A = d_B = 10), two-layer late fusion, gradient flow.

    Two simulations per member: the authors' entrywise init 1e-9 (full: width 100, quick: 8;
    their `rand_sweep` used 50 data sets, we use 200; quick: 12), and a balanced aligned init at
    u0 = 1e-100,
    which shows the convergence to the leading-order formula as u0 -> 0 (its error decays like
    ~3 / ln(1/u0), docs/reproduction.md). The finite-u0 prediction of the exact reduced dynamics
    (`theory.reduced_flow`, balanced start along the drives) at the entrywise init's effective
    scale is recorded per member (full mode only).
    Also recorded: the geometry behind the outliers, cos(Sigma_yxA, W_A^uni) and
    cos(Sigma_yxB, g_B), and k_s = s_B / s_A.
    """
    n = 12 if ctx.quick else 200
    width = 8 if ctx.quick else 100
    stats, pred = random_covariances(n)
    n = len(pred)
    ctx.log(f"  {n} random statistics; entrywise init 1e-9 (width {width}) and aligned 1e-100")
    # one batched solve for both initializations (same structure: one compilation)
    ent = _nets(
        stats, depth=2, fusion_layer=2, width=width, init="entrywise", u0=1e-9, seeds=np.arange(n)
    )
    ali = _nets(
        stats, depth=2, fusion_layer=2, width=width, init="aligned", u0=1e-100, seeds=np.arange(n)
    )
    _, m_both = _flow(
        _concat([ent, ali]), _concat([stats, stats]), n=2 * n, size=_bucket(2 * n), n_save=512
    )
    m_paper = {k: v[:n] for k, v in m_both.items()}
    m_small = {k: v[n:] for k, v in m_both.items()}
    u_eff = entrywise_effective_scale(1e-9, width)
    if ctx.quick:
        m_red = {"time_ratio": np.full(n, np.nan), "success": np.zeros(n, bool)}
    else:
        _, m_red = _reduced(
            stats,
            depth=2,
            fusion_layer=2,
            u0=u_eff,
            n=n,
            size=_bucket(n),
            n_save=512,
            direction="drive",
        )
    d = th.drives(stats)
    w_uni = stats.unimodal_weights("A")
    g = stats.sigma_yxB - w_uni @ stats.sigma_AB

    def cos(a, b):
        return np.asarray(
            jnp.sum(a * b, axis=(-2, -1))
            / (jnp.linalg.norm(a, axis=(-2, -1)) * jnp.linalg.norm(b, axis=(-2, -1)))
        )

    cos_A, cos_B = cos(stats.sigma_yxA, w_uni), cos(stats.sigma_yxB, g)
    rows = []
    for i in range(n):
        rows.append(
            {
                "member": i,
                "theory": pred[i],
                "sim_u0_1e-9": m_paper["time_ratio"][i],
                "sim_u0_1e-100": m_small["time_ratio"][i],
                "reduced_u0_1e-9": m_red["time_ratio"][i],
                "rel_error_1e-9": m_paper["time_ratio"][i] / pred[i] - 1,
                "rel_error_1e-100": m_small["time_ratio"][i] / pred[i] - 1,
                "success_1e-9": m_paper["success"][i],
                "success_1e-100": m_small["success"][i],
                "cos_A": cos_A[i],
                "cos_B": cos_B[i],
                "k_s": float(d.s_B[i] / d.s_A[i]),
            }
        )
    rel9 = np.abs(m_paper["time_ratio"] / pred - 1)
    out9 = (rel9 > 0.1) & m_paper["success"]
    summary = {
        "settings": {"n": n, "width_entrywise": width, "lr_equivalent": 0.005, "keep": [1, 20]},
        "sim_u0_1e-9_vs_theory": _rel_stats(m_paper["time_ratio"], pred, m_paper["success"]),
        "sim_u0_1e-100_vs_theory": _rel_stats(m_small["time_ratio"], pred, m_small["success"]),
        "reduced_u0_1e-9_vs_theory": _rel_stats(m_red["time_ratio"], pred, m_red["success"]),
        "sim_u0_1e-9_vs_reduced_u0_1e-9": _rel_stats(
            m_paper["time_ratio"], m_red["time_ratio"], m_paper["success"] & m_red["success"]
        ),
        "pearson_u0_1e-9": float(
            np.corrcoef(pred[m_paper["success"]], m_paper["time_ratio"][m_paper["success"]])[0, 1]
        ),
        "outliers_u0_1e-9": {
            "count_over_10pct": int(out9.sum()),
            "median_cos_A_outliers": float(np.median(cos_A[out9])) if out9.any() else None,
            "median_cos_A_others": float(np.median(cos_A[~out9])) if (~out9).any() else None,
            "median_k_s_outliers": float(np.median(np.asarray(d.s_B / d.s_A)[out9]))
            if out9.any()
            else None,
            "median_k_s_others": float(np.median(np.asarray(d.s_B / d.s_A)[~out9]))
            if (~out9).any()
            else None,
            "explained_by_reduced_within_10pct": int(
                np.sum(out9 & (np.abs(m_paper["time_ratio"] / m_red["time_ratio"] - 1) < 0.1))
            ),
        },
        "fraction_over_10pct_u0_1e-100": float(
            np.mean(np.abs(m_small["time_ratio"] / pred - 1)[m_small["success"]] > 0.1)
        ),
    }
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.0, 3.6))
    ok = m_paper["success"]
    ax.plot(
        pred[ok],
        m_paper["time_ratio"][ok],
        "o",
        mfc="none",
        color="tab:gray",
        ms=4,
        label="init 1e-9 (entrywise)",
    )
    ok = m_small["success"]
    ax.plot(
        pred[ok],
        m_small["time_ratio"][ok],
        "o",
        mfc="none",
        color="k",
        ms=4,
        label="u0 = 1e-100 (aligned)",
    )
    ax.plot([0, 20], [0, 20], color="tab:red", lw=1)
    ax.set_xlim(0, 20)
    ax.set_ylim(0, 20)
    ax.set_xlabel("Theory")
    ax.set_ylabel("Experiment")
    ax.set_title("Time ratio, random covariances (D = 20)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return rows, summary, fig


# ------------------------------------------------------------------------------------------------
# deep fusion campaign (F6)
# ------------------------------------------------------------------------------------------------
def _deep_settings(quick):
    if quick:
        return {
            "rhos": [-0.9, -0.45, 0.0, 0.45, 0.9],
            "ratios": [1.2, 2.0, 2.8],
            "u0s": [0.03, 0.105, 0.18],
            "seeds": 1,
            "width": 16,
            "depth": 4,
            "init_scale": 0.1,
            "batch": 32,
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
        "batch": 128,
        "n_save": 1024,
    }


def _deep_campaign(ctx) -> dict:
    """All deep (L = 4) simulations, one batched solve per L_f (aligned + random members)."""
    key = ("deep", ctx.quick)
    if key in _CACHE:
        return _CACHE[key]
    s = _deep_settings(ctx.quick)
    L, u_def = s["depth"], s["init_scale"]
    members = []
    for rho in s["rhos"]:
        members.append(("rho", float(rho), 2.0, u_def))
    for r in s["ratios"]:
        members.append(("ratio", 0.0, float(r), u_def))
    for u in s["u0s"]:
        members.append(("init", 0.0, 2.0, float(u)))
    M = len(members)
    rho = np.array([m[1] for m in members])
    ratio = np.array([m[2] for m in members])
    u0 = np.array([m[3] for m in members])
    stats = _toy_stats(rho, ratio)
    res = {"settings": s, "members": members, "per_Lf": {}}
    for Lf in range(1, L + 1):
        t0 = time.time()
        al = _nets(
            stats, depth=L, fusion_layer=Lf, width=s["width"], init="aligned", u0=u0, seeds=0
        )
        rnd_stats = jax.tree.map(lambda a: jnp.repeat(a, s["seeds"], axis=0), stats)
        rnd_seed = np.tile(np.arange(s["seeds"]), M)
        rnd = _nets(
            rnd_stats,
            depth=L,
            fusion_layer=Lf,
            width=s["width"],
            init="random",
            u0=np.repeat(u0, s["seeds"]),
            seeds=rnd_seed,
        )
        nets = _concat([al, rnd])
        all_stats = _concat([stats, rnd_stats])
        n = M * (1 + s["seeds"])
        size = s["batch"] if n <= s["batch"] else _bucket(n)
        traj, m = _flow(nets, all_stats, n=n, size=size, n_save=s["n_save"])
        rtraj, rm = _reduced(
            stats,
            depth=L,
            fusion_layer=Lf,
            u0=u0,
            n=M,
            size=_bucket(M, (32, 128)),
            n_save=s["n_save"],
        )
        formula = np.asarray(th.time_ratio_deep(stats, L, Lf, jnp.asarray(u0)))
        tA_f, tB_f = (np.asarray(a) for a in th.phase_times_deep(stats, L, Lf, jnp.asarray(u0)))
        split = lambda d, a, b: {k: v[a:b] for k, v in d.items()}  # noqa: E731
        res["per_Lf"][Lf] = {
            "aligned": split(m, 0, M),
            "random": split(m, M, n),
            "reduced": rm,
            "formula": formula,
            "t_A_formula": tA_f,
            "t_B_formula": tB_f,
            "loss_curves": {"ts": np.asarray(traj.ts), "loss": np.asarray(traj.loss)},
            "reduced_loss": {"ts": np.asarray(rtraj.ts), "loss": np.asarray(rtraj.loss)},
        }
        ctx.log(f"  L_f = {Lf}: {n} networks + {M} reduced solves in {time.time() - t0:.1f} s")
    res["rho"], res["ratio"], res["u0"] = rho, ratio, u0
    _CACHE[key] = res
    return res


def _deep_rows_and_summary(camp, sweep: str):
    s = camp["settings"]
    idx = [i for i, m in enumerate(camp["members"]) if m[0] == sweep]
    rows, summary = [], {"settings": s}
    for Lf, d in camp["per_Lf"].items():
        f = d["formula"][idx]
        red = d["reduced"]["time_ratio"][idx]
        al = d["aligned"]["time_ratio"][idx]
        rnd = d["random"]["time_ratio"].reshape(-1, s["seeds"])[idx]
        rnd_ok = d["random"]["success"].reshape(-1, s["seeds"])[idx]
        for j, i in enumerate(idx):
            base = {
                "L_f": Lf,
                "rho": camp["rho"][i],
                "ratio": camp["ratio"][i],
                "init_scale": camp["u0"][i],
            }
            rows.append(
                {
                    **base,
                    "kind": "formula",
                    "time_ratio": f[j],
                    "t_A": d["t_A_formula"][i] / LR,
                    "t_B": d["t_B_formula"][i] / LR,
                }
            )
            rows.append(
                {
                    **base,
                    "kind": "reduced",
                    "time_ratio": red[j],
                    "t_A": d["reduced"]["t_A"][i] / LR,
                    "t_B": d["reduced"]["t_B"][i] / LR,
                    "success": d["reduced"]["success"][i],
                }
            )
            rows.append(
                {
                    **base,
                    "kind": "aligned",
                    "time_ratio": al[j],
                    "t_A": d["aligned"]["t_A"][i] / LR,
                    "t_B": d["aligned"]["t_B"][i] / LR,
                    "success": d["aligned"]["success"][i],
                }
            )
            for k in range(s["seeds"]):
                ii = i * s["seeds"] + k
                rows.append(
                    {
                        **base,
                        "kind": "random",
                        "seed": k,
                        "time_ratio": rnd[j, k],
                        "t_A": d["random"]["t_A"][ii] / LR,
                        "t_B": d["random"]["t_B"][ii] / LR,
                        "success": rnd_ok[j, k],
                    }
                )
        # Gap decomposition on (ratio - 1), the part the theory predicts (formula = 1 for L_f = 1).
        rnd_mean = np.nanmean(np.where(rnd_ok, rnd, np.nan), axis=1)
        summary[f"L_f={Lf}"] = {
            "aligned_vs_formula": _rel_stats(al, f, d["aligned"]["success"][idx]),
            "reduced_vs_formula (finite u0)": _rel_stats(red, f, d["reduced"]["success"][idx]),
            "aligned_vs_reduced (integration)": _rel_stats(al, red),
            "random_vs_reduced (random init)": _rel_stats(rnd_mean, red),
            "random_vs_formula": _rel_stats(rnd_mean, f),
            "t_A_aligned_vs_formula": _rel_stats(d["aligned"]["t_A"][idx], d["t_A_formula"][idx]),
            "t_A_random_over_aligned_median": float(
                np.nanmedian(
                    d["random"]["t_A"].reshape(-1, s["seeds"])[idx].mean(axis=1)
                    / d["aligned"]["t_A"][idx]
                )
            ),
        }
    return rows, summary


def _deep_plot(camp, sweep, xkey, xlabel, dense, theory_fn, logx=False):
    plt = _plt()
    s = camp["settings"]
    idx = [i for i, m in enumerate(camp["members"]) if m[0] == sweep]
    x = {"rho": camp["rho"], "ratio": camp["ratio"], "init": camp["u0"]}[sweep][idx]
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    cols = dict(zip((4, 3, 2, 1), _set1(4), strict=True))
    for Lf in (4, 3, 2, 1):
        d = camp["per_Lf"][Lf]
        ax.plot(dense, theory_fn(Lf, dense), color=cols[Lf], lw=1.5, label=f"$L_f$ = {Lf}")
        ax.plot(x, d["reduced"]["time_ratio"][idx], "--", color=cols[Lf], lw=1)
        ax.plot(x, d["aligned"]["time_ratio"][idx], "o", mfc="none", color=cols[Lf], ms=5)
        rnd = d["random"]["time_ratio"].reshape(-1, s["seeds"])[idx]
        ok = np.asarray(d["random"]["success"], bool).reshape(-1, s["seeds"])[idx]
        rnd = np.where(ok, rnd, np.nan)  # unconverged members (flagged) are not drawn
        ax.plot(
            np.repeat(x, s["seeds"]), rnd.ravel(), "^", mfc="none", color=cols[Lf], ms=4, alpha=0.8
        )
    ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"time ratio $t_B/t_A$")
    ax.set_title("L = 4: lines formula, -- reduced, o aligned, △ random init", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return fig


def _fig_deep_rho(ctx):
    """F6b: deep (L = 4) time ratio vs rho, r = 2, u0 = 0.1 (digest 2.6): the integral formula
    (lines), the exact reduced dynamics (dashed), aligned-init networks (circles, = reduced),
    random-init networks (the authors' scheme, triangles; full: 5 seeds, width 100)."""
    camp = _deep_campaign(ctx)
    rows, summary = _deep_rows_and_summary(camp, "rho")
    dense = np.linspace(-0.92, 0.92, 93)
    u = camp["settings"]["init_scale"]
    fig = _deep_plot(
        camp,
        "rho",
        "rho",
        r"correlation $\rho$",
        dense,
        lambda Lf, x: th.time_ratio_deep_toy(4, Lf, x, 2.0, u),
    )
    return rows, summary, fig


def _fig_deep_ratio(ctx):
    """F6c: deep time ratio vs sigma_A / sigma_B (rho = 0, u0 = 0.1); as `deep-rho`."""
    camp = _deep_campaign(ctx)
    rows, summary = _deep_rows_and_summary(camp, "ratio")
    dense = np.linspace(1.0, 3.0, 81)
    u = camp["settings"]["init_scale"]
    fig = _deep_plot(
        camp,
        "ratio",
        "ratio",
        r"variance ratio $\sigma_A/\sigma_B = \sqrt{k}$",
        dense,
        lambda Lf, x: th.time_ratio_deep_toy(4, Lf, 0.0, x, u),
    )
    return rows, summary, fig


def _fig_deep_init(ctx):
    """F6d: deep time ratio vs initialization u0 (r = 2, rho = 0); as `deep-rho`."""
    camp = _deep_campaign(ctx)
    rows, summary = _deep_rows_and_summary(camp, "init")
    dense = np.linspace(0.01, 0.2, 77)
    fig = _deep_plot(
        camp,
        "init",
        "init_scale",
        r"initialization $u_0$",
        dense,
        lambda Lf, x: th.time_ratio_deep_toy(4, Lf, 0.0, 2.0, x),
    )
    return rows, summary, fig


def _fig_deep_loss(ctx):
    """F6a: normalized loss curves, L = 4, r = 2, rho = 0, u0 = 0.1, for L_f = 4, 3, 2, 1 (random
    init: solid; aligned: dashed); dotted: the plateau L(M_A)/L(M_0) = 0.2 (digest 2.1, 2.6)."""
    camp = _deep_campaign(ctx)
    s = camp["settings"]
    i = [k for k, m in enumerate(camp["members"]) if m[0] == "rho" and m[1] == 0.0][0]
    M = len(camp["members"])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 3.2))
    cols = dict(zip((4, 3, 2, 1), _set1(4), strict=True))
    rows = []
    for Lf in (4, 3, 2, 1):
        d = camp["per_Lf"][Lf]
        for kind, j, ls in (("random", M + i * s["seeds"], "-"), ("aligned", i, "--")):
            ts, loss = d["loss_curves"]["ts"][j], d["loss_curves"]["loss"][j]
            ax.plot(
                ts / LR,
                loss / loss[0],
                ls,
                color=cols[Lf],
                lw=1.3,
                label=f"$L_f$ = {Lf}" if kind == "random" else None,
            )
            rows += [
                {"L_f": Lf, "kind": kind, "epoch": t / LR, "t": t, "loss_normalized": v / loss[0]}
                for t, v in zip(ts, loss, strict=True)
            ]
    ax.axhline(float(th.plateau_loss_ratio_toy(0.0, 2.0)), color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(10, None)
    ax.set_xlabel("epoch (lr 0.04)")
    ax.set_ylabel("loss / initial loss")
    ax.set_title(r"L = 4, $\sigma_A/\sigma_B$ = 2, $\rho$ = 0, $u_0$ = 0.1", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    summary = {"settings": s, "plateau_theory": float(th.plateau_loss_ratio_toy(0.0, 2.0))}
    for Lf in (4, 3, 2, 1):
        d = camp["per_Lf"][Lf]
        summary[f"L_f={Lf}"] = {
            "t_A_epochs_aligned": float(d["aligned"]["t_A"][i] / LR),
            "t_B_epochs_aligned": float(d["aligned"]["t_B"][i] / LR),
            "t_A_epochs_random": float(d["random"]["t_A"][i * s["seeds"]] / LR),
            "t_B_epochs_random": float(d["random"]["t_B"][i * s["seeds"]] / LR),
            "t_A_epochs_formula": float(d["t_A_formula"][i] / LR),
        }
    return rows, summary, fig


# ------------------------------------------------------------------------------------------------
# two-layer trajectories (F2, F3) and superficial preference (F5)
# ------------------------------------------------------------------------------------------------
def _fig_trajectories(ctx):
    """F2/F3: two-layer early vs late fusion on the toy data, r = 2, rho in {0, 0.5, -0.5}:
    normalized loss (black), W_A/W_A(end) (blue), W_B/W_B(end) (fuchsia) vs epoch; dotted
    lines: the leading-order t_A, t_B (digest 2.3); grey: the plateau L(M_A) (late) and the
    unimodal weight 1 + rho/r (as a fraction of the final W_A)."""
    cfg = _toy_settings(ctx.quick)
    rhos = np.array([0.0, 0.5, -0.5])
    ratio = np.full(3, 2.0)
    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 5.2), sharex=True)
    rows, summary = [], {"settings": cfg}
    for row, (Lf, name) in enumerate(((2, "late"), (1, "early"))):
        stats, traj, m = _toy_late(ctx, rhos, ratio, np.arange(3), fusion_layer=Lf)
        u_eff = entrywise_effective_scale(cfg["init_scale"], cfg["width"])
        t_A_th, t_B_th = (np.asarray(a) for a in th.phase_times_two_layer(stats, u_eff))
        for j in range(3):
            ax = axes[row, j]
            ts = np.asarray(traj.ts[j]) / LR
            loss = np.asarray(traj.loss[j])
            wa, wb = np.asarray(traj.W_A[j, :, 0, 0]), np.asarray(traj.W_B[j, :, 0, 0])
            ax.plot(ts, loss / loss[0], color=COLOR_LOSS, lw=1.3, label="loss")
            ax.plot(ts, wa / wa[-1], color=COLOR_A, lw=1.3, label=r"$W_A^{tot}$")
            ax.plot(ts, wb / wb[-1], color=COLOR_B, lw=1.3, label=r"$W_B^{tot}$")
            if Lf == 2:
                ax.axvline(t_A_th[j] / LR, color=COLOR_A, ls=":", lw=1)
                ax.axvline(t_B_th[j] / LR, color=COLOR_B, ls=":", lw=1)
                ax.axhline(
                    float(th.plateau_loss(stats)[j] / th.fixed_point_loss(stats, "0")[j]),
                    color="0.6",
                    lw=0.6,
                )
            ax.set_xlim(
                0, min(1000.0, float(ts[-1])) if rhos[j] >= 0 else min(1500.0, float(ts[-1]))
            )
            ax.set_title(f"{name} fusion, $\\rho$ = {rhos[j]:g}", fontsize=9)
            if row == 1:
                ax.set_xlabel("epoch (lr 0.04)")
            step = max(1, len(ts) // 200)
            rows += [
                {
                    "fusion": name,
                    "rho": rhos[j],
                    "epoch": ts[k],
                    "loss_normalized": loss[k] / loss[0],
                    "W_A": wa[k],
                    "W_B": wb[k],
                }
                for k in range(0, len(ts), step)
            ]
            summary[f"{name}_rho={rhos[j]:g}"] = {
                "t_A_epochs": float(m["t_A"][j] / LR),
                "t_B_epochs": float(m["t_B"][j] / LR),
                "t_A_theory_epochs": float(t_A_th[j] / LR),
                "t_B_theory_epochs": float(t_B_th[j] / LR),
                "time_ratio": float(m["time_ratio"][j]),
                "plateau_loss_ratio": float(m["plateau_loss"][j] / m["initial_loss"][j]),
                "plateau_theory": float(th.plateau_loss_ratio_toy(rhos[j], 2.0)),
                "W_A_at_t_uni": float(m["misattribution"][j].ravel()[0] + wa[-1]),
                "W_A_uni_theory": float(1 + rhos[j] / 2.0),
            }
    axes[0, 0].legend(fontsize=7, frameon=False)
    summary["note"] = (
        "theory times use the effective per-layer scale init * sqrt(width / 2) of the "
        "entrywise init (`entrywise_effective_scale`)"
    )
    return rows, summary, fig


def _fig_superficial(ctx):
    """F5: superficial modality preference (digest 2.5). Left: prioritization boundary
    w_A*/w_B* = (sigma_A/sigma_B)^-2 (solid) and contribution boundary (sigma_A/sigma_B)^-1
    (dashed); red: the modality learned first contributes less. Right: a trajectory in that
    region (sigma_A = 2, w* = (1.5, 4), rho = 0; two-layer late fusion): plateau at
    L(M_A)/L(M_0) = 0.64 although L(M_B)/L(M_0) = 0.36."""
    plt = _plt()
    x = np.linspace(0.02, 3.0, 300)
    pri, con = np.asarray(th.prioritization_boundary(x)), np.asarray(th.contribution_boundary(x))
    stats, traj, m = _toy_late(ctx, [0.0], [2.0], [0], w=(1.5, 4.0))
    ts, loss = np.asarray(traj.ts[0]) / LR, np.asarray(traj.loss[0])
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    ax = axes[0]
    ax.plot(x, pri, "k-", label="prioritization")
    ax.plot(x, con, "k--", label="contribution")
    ax.fill_between(x, np.minimum(pri, con), np.maximum(pri, con), color="red", alpha=0.4, lw=0)
    ax.plot([2.0], [1.5 / 4.0], "k*", ms=8)
    ax.set_xlim(0.02, 3)
    ax.set_ylim(0, 3)
    ax.set_xlabel(r"$\sigma_A/\sigma_B$")
    ax.set_ylabel(r"$w_A^*/w_B^*$")
    ax.legend(fontsize=7, frameon=False)
    ax = axes[1]
    ax.plot(ts, loss / loss[0], color=COLOR_LOSS)
    la = float(th.plateau_loss(stats)[0] / th.fixed_point_loss(stats, "0")[0])
    lb = float(th.plateau_loss(stats, "B")[0] / th.fixed_point_loss(stats, "0")[0])
    ax.axhline(la, color=COLOR_A, ls=":", lw=1, label=f"L(M_A) = {la:.2f}")
    ax.axhline(lb, color=COLOR_B, ls=":", lw=1, label=f"L(M_B) = {lb:.2f}")
    ax.set_xlim(0, min(float(ts[-1]), 400))
    ax.set_xlabel("epoch (lr 0.04)")
    ax.set_ylabel("loss / initial loss")
    ax.legend(fontsize=7, frameon=False)
    rows = [
        {"sigma_ratio": a, "prioritization": b, "contribution": c}
        for a, b, c in zip(x, pri, con, strict=True)
    ]
    rows += [{"epoch": a, "loss_normalized": b / loss[0]} for a, b in zip(ts, loss, strict=True)]
    summary = {
        "plateau_loss_ratio_sim": float(m["plateau_loss"][0] / m["initial_loss"][0]),
        "L(M_A)/L(M_0)": la,
        "L(M_B)/L(M_0)": lb,
        "learned_first": ["A", "B"][int(th.learned_first(stats)[0])],
        "superficial": bool(th.superficial_preference(1.5 / 4.0, 2.0)),
    }
    return rows, summary, fig


# ------------------------------------------------------------------------------------------------
# initialization convergence (beyond the paper)
# ------------------------------------------------------------------------------------------------
def _fig_init_convergence(ctx):
    """Beyond the paper: two-layer late fusion, toy data, u0 from 1e-2 down to 1e-30 (float64):
    the simulated t_B/t_A converges to the leading-order formula like c / ln(1/u0).

    Per (rho, ratio): the full network from the balanced aligned init (squares; equal to the
    reduced dynamics), from the authors' deep `random` scheme (per-layer norm u0, width 16,
    circles), the exact reduced dynamics (line) and the first-order formula
    `phase_times_two_layer(order=1)` (dashed), as |ratio / leading-order - 1| vs ln(1/u0)."""
    pairs = [(0.5, 2.0), (-0.5, 2.0), (0.9, 1.5), (-0.9, 3.0), (0.45, 3.0)]
    us = (
        [1e-2, 1e-4, 1e-8, 1e-16, 1e-30]
        if ctx.quick
        else [1e-2, 1e-3, 1e-4, 1e-6, 1e-9, 1e-12, 1e-16, 1e-20, 1e-25, 1e-30]
    )
    grid = [(rho, r, u) for rho, r in pairs for u in us]
    rho = np.array([g[0] for g in grid])
    ratio = np.array([g[1] for g in grid])
    u0 = np.array([g[2] for g in grid])
    n = len(grid)
    stats_a, _, m_al = _toy_late(ctx, rho, ratio, np.zeros(n, int), u0=u0, init="aligned")
    _, _, m_rn = _toy_late(ctx, rho, ratio, np.ones(n, int), u0=u0, init="random")
    _, m_red = _reduced(
        stats_a, depth=2, fusion_layer=2, u0=u0, n=n, size=_bucket(n, (32, 128)), n_save=1024
    )
    lead = np.asarray(th.time_ratio_toy(rho, ratio))
    tA1, tB1 = jax.vmap(lambda s, u: th.phase_times_two_layer(s, u, order=1))(
        stats_a, jnp.asarray(u0)
    )
    first = np.asarray(tB1 / tA1)
    rows = []
    for i in range(n):
        rows.append(
            {
                "rho": rho[i],
                "ratio": ratio[i],
                "init_scale": u0[i],
                "ln_1_over_u0": math.log(1 / u0[i]),
                "leading_order": lead[i],
                "first_order": first[i],
                "reduced": m_red["time_ratio"][i],
                "sim_aligned": m_al["time_ratio"][i],
                "sim_random": m_rn["time_ratio"][i],
                "success_aligned": m_al["success"][i],
                "success_random": m_rn["success"][i],
            }
        )
    ell = np.log(1 / u0)
    err_red = np.abs(m_red["time_ratio"] / lead - 1)
    small = u0 <= 1e-8
    slope = float(np.polyfit(np.log(ell[small]), np.log(err_red[small]), 1)[0])
    summary = {
        "pairs": pairs,
        "u0": us,
        "aligned_vs_reduced": _rel_stats(m_al["time_ratio"], m_red["time_ratio"], m_al["success"]),
        "first_order_vs_reduced": _rel_stats(first, m_red["time_ratio"]),
        "first_order_vs_reduced_u0<=1e-8": _rel_stats(first, m_red["time_ratio"], small),
        "random_vs_leading_at_1e-30": _rel_stats(
            m_rn["time_ratio"], lead, (u0 == 1e-30) & m_rn["success"]
        ),
        "reduced_vs_leading_at_1e-30": _rel_stats(m_red["time_ratio"], lead, u0 == 1e-30),
        "reduced_vs_leading_at_1e-2": _rel_stats(m_red["time_ratio"], lead, u0 == 1e-2),
        "loglog_slope_error_vs_ln(1/u0)": slope,
    }
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.5))
    cols = _set1(len(pairs))
    for c, (rr, ra) in zip(cols, pairs, strict=True):
        sel = (rho == rr) & (ratio == ra)
        e = lambda v: np.abs(v[sel] / lead[sel] - 1)  # noqa: E731
        ax.plot(
            ell[sel],
            e(m_red["time_ratio"]),
            "-",
            color=c,
            lw=1.3,
            label=f"$\\rho$={rr:g}, r={ra:g}",
        )
        ax.plot(ell[sel], e(first), "--", color=c, lw=1)
        ax.plot(ell[sel], e(m_al["time_ratio"]), "s", mfc="none", color=c, ms=5)
        ax.plot(ell[sel], e(m_rn["time_ratio"]), "o", mfc="none", color=c, ms=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\ln(1/u_0)$")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks([5, 10, 20, 40, 70])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(r"$|(t_B/t_A)\,/\,$leading order$ - 1|$")
    ax.set_title("late fusion L = 2: — reduced, -- 1st order, □ aligned, o random", fontsize=8)
    ax.legend(fontsize=6, frameon=False)
    return rows, summary, fig


# ------------------------------------------------------------------------------------------------
# generalization: under- vs over-parametrized (F7)
# ------------------------------------------------------------------------------------------------
def single_population(d: int = 100, noise: float = 0.5) -> Statistics:
    """digest 1.1 multi/'single': Sigma = diag(3 I_{d/2}, I_{d/2}), w* = 0.1 * 1, label noise
    N(0, noise^2). The variance-3 block (learned first) is modality A."""
    h = d // 2
    sxx = jnp.diag(jnp.concatenate([jnp.full(h, 3.0), jnp.ones(h)]))
    w = jnp.full((1, d), 0.1)
    return Statistics(sxx, w @ sxx, w @ sxx @ w.T + noise**2, d_A=h)


def _fig_generalization(ctx):
    """F7: loss (black) and E_g (red) vs epoch for two-layer early and late fusion at P = 70
    (overparametrized: P < d = 100) and P = 700 (digest 2.8); noise 0.5, width 100 (quick: 16),
    entrywise init 1e-9, gradient flow on the sample statistics to convergence. Dashed: the
    predicted final E_g (early: the min-norm interpolant, exact; late: the exact reduced dynamics
    from a balanced start along the drives at the same init (no closed form)); dotted: E_g at
    the sample's unimodal point M_A. Data drawn with key 202310 (the authors' numpy seed
    cannot be reproduced in JAX, so the numbers differ from digest 2.8's)."""
    pop = single_population()
    width = 16 if ctx.quick else 100
    ns = (70, 700)
    datasets = [sample(jax.random.fold_in(jax.random.key(202310), n), pop, n) for n in ns]
    emp = [d.statistics() for d in datasets]
    stats = _concat([jax.tree.map(lambda a: a[None], e) for e in emp])
    t_max = 20_000.0
    res = {}
    for Lf, name in ((1, "early"), (2, "late")):
        nets = _nets(
            stats,
            depth=2,
            fusion_layer=Lf,
            width=width,
            init="entrywise",
            u0=1e-9,
            seeds=np.arange(2),
        )
        traj = gradient_flow(nets, stats, t_max=jnp.full(2, t_max), n_save=1024)
        res[name] = (traj, np.asarray(generalization_error_curve(traj, pop)))
        ctx.log(f"  {name} fusion done")
    eff_u0 = entrywise_effective_scale(1e-9, width)
    late_pred = [th.late_fusion_final_solution(e, init_scale=eff_u0, t_max=1e5) for e in emp]
    rows, summary = (
        [],
        {"settings": {"width": width, "init": "entrywise 1e-9", "noise": 0.5, "d": 100, "n": ns}},
    )
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(8.6, 5.6), sharex=True)
    for j, n in enumerate(ns):
        e_min = float(th.early_fusion_final_error(emp[j], pop))
        e_uni = float(th.unimodal_generalization_error(emp[j], pop))
        e_late = float(th.generalization_error(late_pred[j], pop))
        for i, name in enumerate(("early", "late")):
            traj, eg = res[name]
            ts = np.asarray(traj.ts[j]) / LR
            loss = np.asarray(traj.loss[j])
            ax = axes[i, j]
            ax.plot(ts, loss / loss[0], color=COLOR_LOSS, lw=1.3, label="loss / L(0)")
            ax.plot(ts, eg[j], color=COLOR_EG, lw=1.3, label="$E_g$")
            ax.axhline(e_min if name == "early" else e_late, color=COLOR_EG, ls="--", lw=0.8)
            ax.axhline(e_uni, color="0.5", ls=":", lw=0.8)
            ax.set_xscale("symlog", linthresh=100)
            ax.set_title(f"{name} fusion, {n} training samples", fontsize=9)
            ax.set_ylim(0, 1.2)
            if i == 1:
                ax.set_xlabel("epoch (lr 0.04)")
            step = max(1, len(ts) // 300)
            rows += [
                {
                    "fusion": name,
                    "n": n,
                    "epoch": ts[k],
                    "loss_normalized": loss[k] / loss[0],
                    "E_g": eg[j, k],
                }
                for k in range(0, len(ts), step)
            ]
            w = np.asarray(traj.weights[j, -1])
            at1200 = int(np.searchsorted(ts, 1200.0))
            summary[f"{name}_n={n}"] = {
                "final_E_g": float(eg[j, -1]),
                "E_g_at_1200_epochs": float(eg[j, min(at1200, len(ts) - 1)]),
                "min_E_g": float(eg[j].min()),
                "epoch_of_min_E_g": float(ts[int(np.argmin(eg[j]))]),
                "converged": bool(traj.converged[j]),
                "t_end_epochs": float(traj.t_end[j] / LR),
                "norm_W_A": float(np.linalg.norm(w[:, :50])),
                "norm_W_B": float(np.linalg.norm(w[:, 50:])),
                "predicted_final_E_g": e_min if name == "early" else e_late,
                "E_g_unimodal_M_A": e_uni,
            }
        summary[f"n={n}"] = {
            "min_norm_E_g": e_min,
            "late_reduced_prediction_E_g": e_late,
            "late_reduced_W_norms": [
                float(np.linalg.norm(np.asarray(late_pred[j])[:, :50])),
                float(np.linalg.norm(np.asarray(late_pred[j])[:, 50:])),
            ],
        }
    axes[0, 0].legend(fontsize=7, frameon=False)
    return rows, summary, fig


# ------------------------------------------------------------------------------------------------
# ReLU: heterogeneous XOR (F8) and noisy digits
# ------------------------------------------------------------------------------------------------
def xor_dataset(key, sigma_A: float, n: int) -> Dataset:
    """digest 1.1 heterogeneous XOR: x_B in {(+-1, +-1)} (each n/4 times), XOR(x_B) = -x_B1 x_B2,
    x_A ~ N(0, sigma_A^2), y = x_A + XOR(x_B). Modality A is the scalar Gaussian, B the XOR
    input."""
    corners = jnp.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    x_B = jnp.tile(corners, (n // 4, 1))
    x_A = sigma_A * jax.random.normal(key, (x_B.shape[0], 1))
    y = x_A + (-x_B[:, :1] * x_B[:, 1:])
    return Dataset(x_A, x_B, y)


def _xor_features(w_B, w_out):
    """Fraction of B-units (norm > 20 % of the largest) within 10 deg of an XOR direction
    (+-1, +-1)/sqrt(2), and how many of the four directions are used."""
    nrm = np.linalg.norm(w_B, axis=1) * np.abs(w_out)
    big = nrm > 0.2 * nrm.max()
    ang = np.degrees(np.arctan2(w_B[big, 1], w_B[big, 0])) % 360
    diag = np.array([45.0, 135.0, 225.0, 315.0])
    dist = np.abs((ang[:, None] - diag[None, :] + 180) % 360 - 180)
    near = dist.min(axis=1) < 10
    used = len(set(np.argmin(dist[near], axis=1).tolist())) if near.any() else 0
    return float(near.mean()) if big.any() else 0.0, used


def _fig_xor(ctx):
    """F8 (XOR): ReLU two-layer early vs late fusion on y = x_A + XOR(x_B) (digest 1.1, 2.9b),
    sigma_A in {1, 2, 3}, width 100 (quick: 32), entrywise init 1e-3 (the paper's XOR init is
    not known: digest open point 9), 1024 samples (quick 256), full-batch GD at lr 0.04 for
    20000 epochs (quick: 4000). (Adaptive gradient flow is impractical here: the ReLU kinks
    force tiny steps.)
    Panels: the B inputs' first-layer weights (W_B1, W_B2) of each hidden unit (scaled by its
    output weight), coloured by its A weight (early fusion) or by its output weight (late
    fusion, whose B units have no A weight); right: normalized loss. The digest reports that
    late fusion always forms the four XOR features while early fusion does not, and can stall on
    the linear modality for large sigma_A (no formula exists, digest 2.9b)."""
    sigmas = [1.0, 2.0, 3.0]
    width = 32 if ctx.quick else 100
    n = 256 if ctx.quick else 1024
    seeds = 1 if ctx.quick else 2
    n_steps = 4000 if ctx.quick else 20000
    grid = [(s, k) for s in sigmas for k in range(seeds)]
    data = _concat(
        [
            jax.tree.map(lambda a: a[None], xor_dataset(jax.random.key(100 + k), s, n))
            for s, k in grid
        ]
    )
    plt = _plt()
    fig, axes = plt.subplots(2, 4, figsize=(12, 5.4))
    rows, summary = (
        [],
        {
            "settings": {
                "width": width,
                "samples": n,
                "init": "entrywise 1e-3",
                "seeds": seeds,
                "optimizer": f"GD lr {LR}",
                "epochs": n_steps,
            }
        },
    )
    for r, (Lf, name) in enumerate(((1, "early"), (2, "late"))):
        keys = jnp.stack(
            [jax.random.fold_in(jax.random.key(k), i) for i, (_, k) in enumerate(grid)]
        )
        nets = eqx.filter_vmap(
            lambda key: FusionDLN.init(
                key,
                depth=2,
                fusion_layer=Lf,
                width=width,
                d_A=1,
                d_B=2,
                init_scale=1e-3,
                init="entrywise",
                activation="relu",
            )
        )(keys)
        traj = gradient_descent(
            nets,
            data,
            lr=LR,
            n_steps=n_steps,
            n_save=200,
            converge_rtol=1e-8,
            on_divergence="raise",
        )
        fin = traj.final
        for i, (s, k) in enumerate(grid):
            if Lf == 1:
                wB = np.asarray(fin.fusion_B[i])
                wA = np.asarray(fin.fusion_A[i])[:, 0]
                wout = np.asarray(fin.shared[0][i])[0]
            else:
                wB = np.asarray(fin.branch_B[0][i])
                wA = np.zeros(wB.shape[0])
                wout = np.asarray(fin.fusion_B[i])[0]
            frac, used = _xor_features(wB, wout)
            loss = np.asarray(traj.loss[i])
            summary[f"{name}_sigmaA={s:g}_seed={k}"] = {
                "final_loss_normalized": float(loss[-1] / loss[0]),
                "linear_only_level": float(0.5 / (0.5 * (s**2 + 1))),
                "xor_feature_fraction": frac,
                "xor_directions_used": used,
                "epochs_run": float(traj.t_end[i] / LR),
                "converged": bool(traj.converged[i]),
            }
            rows += [
                {
                    "fusion": name,
                    "sigma_A": s,
                    "seed": k,
                    "epoch": t / LR,
                    "loss_normalized": v / loss[0],
                }
                for t, v in zip(np.asarray(traj.ts[i])[::4], loss[::4], strict=True)
            ]
            rows += [
                {
                    "fusion": name,
                    "sigma_A": s,
                    "seed": k,
                    "unit": u,
                    "w_B1": wB[u, 0],
                    "w_B2": wB[u, 1],
                    "w_A": wA[u],
                    "w_out": wout[u],
                }
                for u in range(wB.shape[0])
            ]
            if k == 0:
                j = sigmas.index(s)
                ax = axes[r, j]
                sc = np.abs(wout)[:, None] * wB
                lim = max(0.3, 1.1 * np.abs(sc).max())
                # colour: the unit's A weight (early fusion, as the authors' `fig_feat`); late
                # fusion's B units have none, so their output weight's sign is shown instead.
                col = wA * np.abs(wout) if Lf == 1 else wout
                cmax = np.abs(col).max() + 1e-12
                ax.scatter(sc[:, 0], sc[:, 1], c=col, cmap="coolwarm", s=10, vmin=-cmax, vmax=cmax)
                ax.set_xlabel("$W_{B1}$", fontsize=8)
                ax.set_ylabel("$W_{B2}$", fontsize=8)
                ax.set_xlim(-lim, lim)
                ax.set_ylim(-lim, lim)
                ax.set_aspect("equal")
                ax.set_title(f"{name}, $\\sigma_A$ = {s:g}: {used} XOR dirs", fontsize=8)
                axes[r, 3].plot(
                    np.asarray(traj.ts[i]) / LR, loss / loss[0], label=f"$\\sigma_A$ = {s:g}"
                )
        axes[r, 3].set_xscale("log")
        axes[r, 3].set_title(f"{name} fusion: loss / L(0)", fontsize=8)
        axes[r, 3].legend(fontsize=6, frameon=False)
        ctx.log(f"  {name} fusion done")
    return rows, summary, fig


def _digits_views(key, x, p_a_clean=0.8, p_both=0.2):
    """Two views of each image: the authors' noisy-MNIST corruption (digest 2.9c) as coded:
    A ~ Bern(0.8) decides A clean & B corrupted, else AB ~ Bern(0.2) decides both clean, else
    B clean & A corrupted; corrupted = 0.1 x + N(0, 0.15^2)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n = x.shape[0]
    a = jax.random.bernoulli(k1, p_a_clean, (n, 1))
    ab = jax.random.bernoulli(k2, p_both, (n, 1))
    noisy_A = 0.1 * x + 0.15 * jax.random.normal(k3, x.shape)
    noisy_B = 0.1 * x + 0.15 * jax.random.normal(k4, x.shape)
    x_A = jnp.where(a | ab, x, noisy_A)
    x_B = jnp.where(~a | ab, x, noisy_B)
    return x_A, x_B


def _fig_digits(ctx):
    """F8 (noisy MNIST) in the spirit of the authors' experiment, on scikit-learn's bundled 8x8
    digits (no download): both modalities are views of the same image, one clean and one
    corrupted per sample as in the authors' code (digest 2.9c; A clean 80 %, B clean 16 %, both
    4 %). Deep ReLU FusionDLN, L = 4, L_f in {1, 2, 3, 4}, width 64, entrywise init 0.03
    (small, ~0.4 x PyTorch's default 1/sqrt(3 fan_in): the unimodal phase is a small-init
    effect; at the default scale B lags by < 100 epochs for every L_f), MSE on one-hot targets
    (the package's loss; the authors used cross-entropy), full-batch GD at lr 0.2 on 1200
    training images for 3000 epochs (quick: 800), test accuracy on the other 597 every 50 epochs
    (quick: 40) with x_B = 0 ("A"), x_A = 0 ("B"), both views as in training ("A&B")."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean()) / X.std()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    tr, te = perm[:1200], perm[1200:]
    xa_tr, xb_tr = _digits_views(jax.random.key(1), jnp.asarray(X[tr]))
    xa_te, xb_te = _digits_views(jax.random.key(2), jnp.asarray(X[te]))
    x_te = jnp.asarray(X[te])
    onehot = jnp.eye(10)[y[tr]]
    data = Dataset(xa_tr, xb_tr, onehot)
    width = 64
    epochs = 800 if ctx.quick else 3000
    chunk = 40 if ctx.quick else 50
    lr = 0.2
    init = 0.03
    y_te = np.asarray(y[te])
    rows, summary = (
        [],
        {
            "settings": {
                "width": width,
                "epochs": epochs,
                "lr": lr,
                "init": f"entrywise {init}",
                "train": 1200,
                "test": len(te),
                "loss": "MSE on one-hot",
            }
        },
    )

    def acc(net, a, b):
        pred = jax.vmap(net)(a, b)
        return float(np.mean(np.argmax(np.asarray(pred), axis=1) == y_te))

    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.0), sharey=True)
    for Lf in (1, 2, 3, 4):
        net = FusionDLN.init(
            jax.random.key(Lf),
            depth=4,
            fusion_layer=Lf,
            width=width,
            d_A=64,
            d_B=64,
            d_out=10,
            init_scale=init,
            init="entrywise",
            activation="relu",
        )
        hist = []
        ep = 0
        while True:
            zeros = jnp.zeros_like(x_te)
            rec = {
                "L_f": Lf,
                "epoch": ep,
                "acc_A": acc(net, x_te, zeros),
                "acc_B": acc(net, zeros, x_te),
                "acc_AB": acc(net, xa_te, xb_te),
            }
            hist.append(rec)
            if ep >= epochs:
                break
            traj = gradient_descent(
                net,
                data,
                lr=lr,
                n_steps=chunk,
                n_save=3,
                converge_rtol=1e-12,
                on_divergence="raise",
            )
            rec["loss"] = float(traj.loss[0])
            net = traj.final
            ep += chunk
        hist[-1]["loss"] = float(traj.loss[-1])
        rows += hist
        ep_arr = np.array([h["epoch"] for h in hist])
        a_arr, b_arr, ab_arr = (
            np.array([h[k] for h in hist]) for k in ("acc_A", "acc_B", "acc_AB")
        )
        l_arr = np.array([h.get("loss", np.nan) for h in hist])

        def first(a, thr):
            i = np.flatnonzero(a >= thr)
            return float(ep_arr[i[0]]) if i.size else None

        summary[f"L_f={Lf}"] = {
            "final_acc_A": float(a_arr[-1]),
            "final_acc_B": float(b_arr[-1]),
            "final_acc_AB": float(ab_arr[-1]),
            "epoch_acc_A_50pct": first(a_arr, 0.5),
            "epoch_acc_B_50pct": first(b_arr, 0.5),
        }
        ax = axes[Lf - 1]
        ax.plot(ep_arr, a_arr, color=COLOR_A, label="A")
        ax.plot(ep_arr, b_arr, color=COLOR_B, label="B")
        ax.plot(ep_arr, ab_arr, "k--", lw=1, label="A&B")
        ax.plot(ep_arr, l_arr / np.nanmax(l_arr), color=COLOR_LOSS, lw=0.8, label="loss (norm.)")
        ax.set_title(f"$L_f$ = {Lf}", fontsize=9)
        ax.set_xlabel("epoch")
        ctx.log(f"  L_f = {Lf}: acc A {a_arr[-1]:.2f}, B {b_arr[-1]:.2f}, A&B {ab_arr[-1]:.2f}")
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=7, frameon=False)
    return rows, summary, fig


# ------------------------------------------------------------------------------------------------
# registry and entry points
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Figure:
    func: Callable
    digest: str
    title: str


FIGURES: dict[str, _Figure] = {
    "trajectories": _Figure(
        _fig_trajectories, "F2/F3", "two-layer early vs late fusion trajectories"
    ),
    "toy-time-ratio": _Figure(
        _fig_toy_time_ratio, "F4c, 2.9a", "toy time ratio vs rho (linear GF, GD, ReLU)"
    ),
    "misattribution": _Figure(_fig_misattribution, "F4d", "misattribution vs rho"),
    "heatmaps": _Figure(_fig_heatmap, "F4a/b", "theory heatmaps of time ratio and misattribution"),
    "random-cov": _Figure(
        _fig_random_cov, "F4e", "random inverse-Wishart covariances: theory vs simulation"
    ),
    "superficial": _Figure(_fig_superficial, "F5", "superficial modality preference"),
    "deep-loss": _Figure(_fig_deep_loss, "F6a", "deep fusion loss curves for L_f = 1..4"),
    "deep-rho": _Figure(_fig_deep_rho, "F6b", "deep time ratio vs rho"),
    "deep-ratio": _Figure(_fig_deep_ratio, "F6c", "deep time ratio vs variance ratio"),
    "deep-init": _Figure(_fig_deep_init, "F6d", "deep time ratio vs initialization"),
    "generalization": _Figure(
        _fig_generalization, "F7, 2.8", "under- vs over-parametrized loss and E_g"
    ),
    "xor": _Figure(_fig_xor, "F8, 2.9b", "ReLU heterogeneous XOR: early vs late fusion features"),
    "digits": _Figure(
        _fig_digits, "F8, 2.9c", "noisy-digits fusion depth experiment (per-modality accuracy)"
    ),
    "init-convergence": _Figure(
        _fig_init_convergence, "beyond", "convergence to the theory as u0 -> 0"
    ),
}


def reproduce(
    name: str,
    *,
    quick: bool = False,
    out: str | Path = "mdln-reproduce",
    log: Callable | None = None,
) -> Reproduction:
    """Run one entry of `FIGURES`; writes NAME.csv, NAME.png and NAME.json into `out`."""
    if name not in FIGURES:
        raise ValueError(f"figure must be one of {sorted(FIGURES)} or 'all'; got {name!r}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Context(quick=bool(quick), out=out, log=log or (lambda s: None))
    t0 = time.time()
    rows, summary, fig = FIGURES[name].func(ctx)
    seconds = time.time() - t0
    summary = {
        "figure": name,
        "digest": FIGURES[name].digest,
        "quick": bool(quick),
        "seconds": round(seconds, 1),
        **summary,
    }
    files = [_write_csv(out / f"{name}.csv", rows), _savefig(fig, out / f"{name}.png")]
    path = out / f"{name}.json"
    path.write_text(json.dumps(_jsonable(summary), indent=1))
    files.append(path)
    return Reproduction(name, rows, summary, files, seconds)


def reproduce_all(
    *, quick: bool = False, out: str | Path = "mdln-reproduce", log: Callable | None = None
) -> dict[str, Reproduction]:
    """Run every entry in order (shared simulations are computed once)."""
    return {name: reproduce(name, quick=quick, out=out, log=log) for name in FIGURES}


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``reproduce FIGURE [--quick] [--out DIR]`` on an argparse subparsers object."""
    lines = "\n".join(f"  {k:<17} {v.digest:<10} {v.title}" for k, v in FIGURES.items())
    p = subparsers.add_parser(
        "reproduce",
        help="regenerate the paper's figures (CSV + PNG + JSON agreement summary)",
        description="Regenerate a figure of Zhang, Latham & Saxe (ICML 2024) with this package: "
        "simulations, theory curves and their measured agreement.",
        epilog=f"figures:\n{lines}\n  all               every entry (shared runs computed once)\n\n"
        "examples:\n  mdln reproduce toy-time-ratio --quick\n"
        "  mdln reproduce all --quick --out results/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("figure", metavar="FIGURE", help="a figure name (see below) or 'all'")
    p.add_argument(
        "--quick", action="store_true", help="small, fast versions (smoke test; minutes for all)"
    )
    p.add_argument(
        "--out",
        default="mdln-reproduce",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    p.set_defaults(func=main_reproduce)
    return p


def main_reproduce(args) -> int:
    """CLI handler: runs the entry (or all), prints one line per entry with its outputs."""
    names = list(FIGURES) if args.figure == "all" else [args.figure]
    for n in names:
        if n not in FIGURES:
            raise ValueError(f"FIGURE must be one of {', '.join(FIGURES)} or 'all'; got {n!r}.")
    t0 = time.time()
    for n in names:
        print(f"[{n}] {FIGURES[n].title}", flush=True)
        res = reproduce(n, quick=args.quick, out=args.out, log=lambda s: print(s, flush=True))
        print(f"[{n}] {res.seconds:.1f} s -> {', '.join(str(f) for f in res.files)}", flush=True)
    print(f"done in {time.time() - t0:.1f} s", flush=True)
    return 0
