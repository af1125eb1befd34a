"""Reproduce entries ``greedy-*`` and the ``mdln greedy`` command (Wu et al. 2022 on DLNs).

Experiments (greedy digest sections 4.6 and 5):

- ``toy`` (digest 4.6(i)): two-layer late fusion on the toy data (ratio 2, width 100, entrywise
  init std 1e-9, population gradients, lr 0.04, alpha 0.01, no warm-up), vanilla vs balanced
  (Q = 1, 5) for rho in {0.5, 0, -0.5}: t_A, t_B (first crossings, in steps and in gradient-flow
  time steps x lr), lag, steps in the unimodal phase (d_util < -0.9), inverted steps
  (d_util > 0), re-balancing steps, final d_util, loss and E_g; figures of d_util(t) and
  d_speed(t).
- ``ode``: the same configurations with the continuous-time hybrid system
  (`balanced.balanced_flow`) against the discrete loop.
- ``deep`` (digest 4.6(ii)): L = 4, L_f in {2, 3, 4}, the authors' deep Gaussian init
  (FusionDLN init="random", u0 = 0.1), 15 000 steps.
- ``digits``: scikit-learn's 8x8 digits (bundled with scikit-learn, no download) split into two
  noisy views (left / right image half, Gaussian pixel noise of different strength), a two-head
  ReLU `TwoHeadFusionNet` trained with minibatch SGD on the sum of the heads' cross-entropies;
  vanilla vs balanced vs random re-balancing over several seeds: test accuracy, head and
  unimodal (mean-imputed) accuracies, d_util.

Every experiment is one (or a few) vmapped, jitted training call(s); `REPRODUCE` maps the entry
names to functions ``fn(out_dir, quick=False) -> summary dict`` and `add_cli` registers the
``mdln greedy`` subcommand.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import balanced as _bl
from . import greedy as _g
from ._dataset import Dataset
from ._network import FusionDLN
from ._statistics import Statistics
from ._two_head import TwoHeadFusionNet

__all__ = [
    "DIGEST_TOY",
    "DIGEST_DEEP",
    "toy_experiment",
    "ode_experiment",
    "deep_experiment",
    "digits_views",
    "digits_experiment",
    "plot_toy",
    "REPRODUCE",
    "add_cli",
]

# Digest 4.6(i), in steps: (rho, Q or None for vanilla) -> (t_A, t_B).
DIGEST_TOY = {
    (0.5, None): (104, 468),
    (0.5, 1): (207, 258),
    (0.5, 5): (865, 241),
    (0.0, None): (127, 477),
    (0.0, 1): (253, 477),
    (0.0, 5): (757, 477),
    (-0.5, None): (164, 798),
    (-0.5, 1): (327, 12840),
    (-0.5, 5): (979, 19816),
}
# Digest 4.6(i): steps with d_util < -0.9 in the first 3000 steps (vanilla, Q=1, Q=5), and
# steps with inverted imbalance for Q = 5.
DIGEST_UNIMODAL = {0.5: (341, 54, 0), 0.0: (335, 220, 0)}
DIGEST_INVERTED_Q5 = {0.5: 619, 0.0: 267}
# Digest 4.6(ii), in steps: (rho, L_f, Q or None) -> (t_A, t_B).
DIGEST_DEEP = {
    (0.5, 2, None): (824, 872),
    (0.5, 2, 1): (1439, 1444),
    (0.5, 2, 5): (2127, 2055),
    (0.5, 3, None): (925, 1619),
    (0.5, 3, 1): (1835, 1989),
    (0.5, 3, 5): (2899, 2802),
    (0.5, 4, None): (1304, 7830),
    (0.5, 4, 1): (2607, 4271),
    (0.5, 4, 5): (4417, 4320),
    (0.0, 2, None): (1059, 1110),
    (0.0, 2, 1): (2001, 2034),
    (0.0, 2, 5): (3829, 3796),
    (0.0, 3, None): (1155, 1826),
    (0.0, 3, 1): (2305, 2775),
    (0.0, 3, 5): (5203, 5077),
    (0.0, 4, None): (1629, 7501),
    (0.0, 4, 1): (3257, 7501),
    (0.0, 4, 5): (7999, 7796),
}


# ------------------------------------------------------------------------------------------------
# configurations
# ------------------------------------------------------------------------------------------------
def _members(rhos, Qs, alpha):
    """One member per (rho, algorithm): vanilla is the balanced loop with alpha = inf (it never
    triggers), so every member shares one compiled function."""
    rows = []
    for rho in rhos:
        rows.append({"rho": float(rho), "algorithm": "vanilla", "Q": None, "alpha": None})
        for q in Qs:
            rows.append(
                {"rho": float(rho), "algorithm": "balanced", "Q": int(q), "alpha": float(alpha)}
            )
    return rows


def _toy_batch(rows, ratio, key, make_net):
    rho = jnp.asarray([r["rho"] for r in rows])
    stats = jax.vmap(lambda r: Statistics.toy(r, ratio))(rho)
    # The same initial network for every member: paired comparisons, as in the digest.
    nets = eqx.filter_vmap(lambda _: make_net(key))(jnp.arange(len(rows)))
    alpha = jnp.asarray([math.inf if r["alpha"] is None else r["alpha"] for r in rows])
    Q = jnp.asarray([r["Q"] or 1 for r in rows])
    return stats, nets, alpha, Q


def _toy_late_net(key, *, width, init_scale):
    """Two-layer late-fusion net on scalar toy modalities, the authors' entrywise init."""
    return FusionDLN.init(
        key,
        depth=2,
        fusion_layer=2,
        width=width,
        d_A=1,
        d_B=1,
        init_scale=init_scale,
        init="entrywise",
    )


def _f(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _i(x):
    x = int(x)
    return x if x >= 0 else None


# ------------------------------------------------------------------------------------------------
# toy (digest 4.6(i)) and its continuous-time counterpart
# ------------------------------------------------------------------------------------------------
def toy_experiment(
    *,
    rhos=(0.5, 0.0, -0.5),
    ratio: float = 2.0,
    Qs=(1, 5),
    alpha: float = 0.01,
    lr: float = 0.04,
    width: int = 100,
    init_scale: float = 1e-9,
    n_steps: int = 40_000,
    count_window: int = 3000,
    n_save: int = 400,
    seed: int = 0,
):
    """Vanilla vs balanced training of two-layer late fusion on the toy data (digest 4.6(i)).

    Returns `(rows, run)`: one dict per member (times in steps and in gradient-flow units
    t = steps x lr) and the batched `GreedyRun`.
    """
    rows = _members(rhos, Qs, alpha)

    make = functools.partial(_toy_late_net, width=width, init_scale=init_scale)
    stats, nets, a, q = _toy_batch(rows, ratio, jax.random.key(seed), make)
    run = _bl.train(
        nets,
        stats,
        lr=lr,
        n_steps=n_steps,
        algorithm="balanced",
        alpha=a,
        Q=q,
        n_save=n_save,
        save="log",
        count_window=count_window,
    )
    from .theory import time_ratio_toy

    for i, r in enumerate(rows):
        r.update(_run_row(run, i, lr))
        r["theory_ratio_vanilla"] = float(time_ratio_toy(r["rho"], ratio))
        ref = (
            DIGEST_TOY.get((r["rho"], r["Q"]))
            if (ratio, lr, width, init_scale) == (2.0, 0.04, 100, 1e-9)
            else None
        )
        r["digest_t_A_steps"], r["digest_t_B_steps"] = ref if ref else (None, None)
    return rows, run


def _run_row(run, i, lr):
    tA, tB = _i(run.t_A_step[i]), _i(run.t_B_step[i])
    counts = np.asarray(run.mode_counts[i])
    return {
        "t_A_steps": tA,
        "t_B_steps": tB,
        "t_A": None if tA is None else tA * lr,
        "t_B": None if tB is None else tB * lr,
        "lag_steps": None if tA is None or tB is None else tB - tA,
        "time_ratio": None if tA is None or tB is None else tB / tA,
        "unimodal_steps": _i(run.n_unimodal[i]),
        "inverted_steps": _i(run.n_inverted[i]),
        "rebalance_steps": int(counts[1] + counts[2]),
        "final_d_util": _f(run.d_util[i, -1]),
        "final_d_speed": _f(run.d_speed[i, -1]),
        "final_loss": _f(run.loss[i, -1]),
        "final_E_g": _f(run.gen_error[i, -1]),
        "final_R2": _f(run.perf[i, -1]),
    }


def ode_experiment(
    *,
    rhos=(0.5, 0.0, -0.5),
    ratio: float = 2.0,
    Qs=(1, 5),
    alpha: float = 0.01,
    lr: float = 0.04,
    width: int = 100,
    init_scale: float = 1e-9,
    n_steps: int = 25_000,
    t_max: float | None = None,
    seed: int = 0,
    gd_correction: bool = True,
):
    """Discrete loop vs the duty-cycle-averaged hybrid ODE on the toy configurations.

    Returns `(rows, run, flow)` with t_A, t_B of both (steps; the ODE's time / lr) and their
    relative differences.
    """
    rows = _members(rhos, Qs, alpha)

    make = functools.partial(_toy_late_net, width=width, init_scale=init_scale)
    stats, nets, a, q = _toy_batch(rows, ratio, jax.random.key(seed), make)
    run = _bl.train(
        nets, stats, lr=lr, n_steps=n_steps, algorithm="balanced", alpha=a, Q=q, n_save=100
    )
    flow = _bl.balanced_flow(
        nets,
        stats,
        lr=lr,
        t_max=t_max or n_steps * lr,
        algorithm="balanced",
        alpha=a,
        Q=q,
        gd_correction=gd_correction,
    )
    for i, r in enumerate(rows):
        d_A, d_B = _i(run.t_A_step[i]), _i(run.t_B_step[i])
        f_A, f_B = _f(flow.t_A[i] / lr), _f(flow.t_B[i] / lr)
        r.update(
            {
                "discrete_t_A_steps": d_A,
                "discrete_t_B_steps": d_B,
                "ode_t_A_steps": f_A,
                "ode_t_B_steps": f_B,
                "rel_diff_t_A": None if d_A is None or f_A is None else f_A / d_A - 1,
                "rel_diff_t_B": None if d_B is None or f_B is None else f_B / d_B - 1,
                "ode_switches": int(flow.n_switches[i]),
                "ode_ok": bool(flow.ok[i]),
            }
        )
    return rows, run, flow


# ------------------------------------------------------------------------------------------------
# deep fusion (digest 4.6(ii))
# ------------------------------------------------------------------------------------------------
def deep_experiment(
    *,
    rhos=(0.5, 0.0),
    fusion_layers=(2, 3, 4),
    depth: int = 4,
    ratio: float = 2.0,
    Qs=(1, 5),
    alpha: float = 0.01,
    lr: float = 0.04,
    width: int = 100,
    init_scale: float = 0.1,
    n_steps: int = 15_000,
    seed: int = 0,
):
    """Vanilla vs balanced for deep fusion networks (one vmapped run per L_f)."""
    out = []
    for lf in fusion_layers:
        rows = _members(rhos, Qs, alpha)

        def make(k, lf=lf):
            return FusionDLN.init(
                k,
                depth=depth,
                fusion_layer=lf,
                width=width,
                d_A=1,
                d_B=1,
                init_scale=init_scale,
                init="random",
            )

        stats, nets, a, q = _toy_batch(rows, ratio, jax.random.key(seed), make)
        run = _bl.train(
            nets, stats, lr=lr, n_steps=n_steps, algorithm="balanced", alpha=a, Q=q, n_save=100
        )
        for i, r in enumerate(rows):
            r["fusion_layer"] = lf
            r.update(_run_row(run, i, lr))
            ref = DIGEST_DEEP.get((r["rho"], lf, r["Q"])) if depth == 4 else None
            r["digest_t_A_steps"], r["digest_t_B_steps"] = ref if ref else (None, None)
        out.extend(rows)
    return out


# ------------------------------------------------------------------------------------------------
# digits: a small real two-view data set
# ------------------------------------------------------------------------------------------------
def digits_views(seed: int = 0, *, noise_A: float = 0.1, noise_B: float = 0.5, n_train: int = 1000):
    """scikit-learn's 8x8 digits as two noisy views: A = left image half (32 pixels), B = right
    half, pixel values in [0, 1] plus Gaussian noise (std `noise_A`, `noise_B`), standardised
    with training-set statistics; labels one-hot (10 classes). Returns `(train, test)`."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits experiment needs scikit-learn (pip install scikit-learn); "
            "sklearn.datasets.load_digits ships the data, nothing is downloaded."
        ) from err
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    X, y = X[perm].reshape(-1, 8, 8) / 16.0, y[perm]
    A = X[:, :, :4].reshape(len(X), -1) + noise_A * rng.standard_normal((len(X), 32))
    B = X[:, :, 4:].reshape(len(X), -1) + noise_B * rng.standard_normal((len(X), 32))

    def standardise(V):
        m, s = V[:n_train].mean(0), V[:n_train].std(0) + 1e-8
        return (V - m) / s

    A, B, Y = standardise(A), standardise(B), np.eye(10)[y]
    tr = Dataset(jnp.asarray(A[:n_train]), jnp.asarray(B[:n_train]), jnp.asarray(Y[:n_train]))
    te = Dataset(jnp.asarray(A[n_train:]), jnp.asarray(B[n_train:]), jnp.asarray(Y[n_train:]))
    return tr, te


def digits_experiment(
    *,
    seeds: int = 5,
    noise_A: float = 0.1,
    noise_B: float = 0.5,
    width: int = 64,
    init_scale: float = 0.15,
    lr: float = 0.05,
    n_steps: int = 3000,
    batch_size: int = 64,
    Q: int = 5,
    alpha: float = 0.01,
    warmup: int | None = None,
    algorithms=("vanilla", "balanced", "random"),
    n_save: int = 30,
):
    """Two-head ReLU network on two noisy digit views, vanilla vs balanced vs random
    re-balancing, over `seeds` seeds (data split, noise and init per seed).

    Depth 3 (32 -> width -> width -> 10 per branch), cross-connections at layers 2 and 3,
    entrywise init N(0, init_scale^2), minibatch SGD, loss = sum of the heads' cross-entropies
    (the authors' blend loss), warm-up one epoch (default). Returns `(rows, summary)`: one row
    per (algorithm, seed) and mean / std per algorithm.
    """
    views = [digits_views(s, noise_A=noise_A, noise_B=noise_B) for s in range(seeds)]
    tr = jax.tree.map(lambda *a: jnp.stack(a), *[v[0] for v in views])
    te = jax.tree.map(lambda *a: jnp.stack(a), *[v[1] for v in views])
    n_train = tr.x_A.shape[1]
    warmup = -(-n_train // batch_size) if warmup is None else warmup
    nets = eqx.filter_vmap(
        lambda k: TwoHeadFusionNet.init(
            k,
            depth=3,
            fusion_layers=(2, 3),
            width=width,
            d_A=32,
            d_B=32,
            d_out=10,
            init_scale=init_scale,
            init="entrywise",
            activation="relu",
        )
    )(jax.random.split(jax.random.key(1234), seeds))
    keys = jax.random.split(jax.random.key(99), seeds)
    rows = []
    for alg in algorithms:
        kw = (
            dict(algorithm="random")
            if alg == "random"
            else dict(algorithm="balanced", alpha=(math.inf if alg == "vanilla" else alpha), Q=Q)
        )
        run = _bl.train(
            nets,
            tr,
            lr=lr,
            n_steps=n_steps,
            warmup=warmup,
            loss="cross_entropy",
            eval_data=te,
            batch_size=batch_size,
            key=keys,
            n_save=n_save,
            **kw,
        )
        u = eqx.filter_vmap(lambda n, e, t: _g.utilization(n, e, train=t))(run.final, te, tr)
        counts = np.asarray(run.mode_counts)
        for s in range(seeds):
            rows.append(
                {
                    "algorithm": alg,
                    "seed": s,
                    "test_accuracy": float(run.perf[s, -1]),
                    "head0_accuracy": float(u.perf[s, 0]),
                    "head1_accuracy": float(u.perf[s, 1]),
                    "unimodal0_accuracy": float(u.perf_imputed[s, 0]),
                    "unimodal1_accuracy": float(u.perf_imputed[s, 1]),
                    "u_10": float(u.u_10[s]),
                    "u_01": float(u.u_01[s]),
                    "d_util": float(u.d_util[s]),
                    "final_d_speed": _f(run.d_speed[s, -1]),
                    "rebalance_steps": int(counts[s, 1] + counts[s, 2]),
                    "final_train_loss": float(run.loss[s, -1]),
                }
            )
    summary = {}
    keys_ = (
        "test_accuracy",
        "head0_accuracy",
        "head1_accuracy",
        "unimodal0_accuracy",
        "unimodal1_accuracy",
        "d_util",
    )
    for alg in algorithms:
        sel = [r for r in rows if r["algorithm"] == alg]
        summary[alg] = {
            k: {
                "mean": float(np.mean([r[k] for r in sel])),
                "std": float(np.std([r[k] for r in sel])),
            }
            for k in keys_
        }
    return rows, summary


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def plot_toy(rows, run, out_dir, prefix: str = "greedy_toy", lr: float = 0.04):
    """d_util(t) and d_speed(t) for every member (one panel per rho), gradient-flow time on a
    log axis. Writes `<prefix>_dutil.png` and `<prefix>_dspeed.png`; returns the paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rhos = sorted({r["rho"] for r in rows}, reverse=True)
    paths = []
    alpha = next((r["alpha"] for r in rows if r["alpha"] is not None), None)
    for field, label, name in (
        ("d_util", "$d_{util}$", "dutil"),
        ("d_speed", "$d_{speed}$", "dspeed"),
    ):
        fig, axes = plt.subplots(
            1, len(rhos), figsize=(4.2 * len(rhos), 3.4), squeeze=False, sharey=field == "d_util"
        )
        for ax, rho in zip(axes[0], rhos, strict=True):
            for i, r in enumerate(rows):
                if r["rho"] != rho:
                    continue
                ts = np.asarray(run.steps[i]) * lr
                ys = np.asarray(getattr(run, field)[i])
                keep = ts >= 0.5  # before that the prediction is ~0 and the rates are noise
                lab = "vanilla" if r["Q"] is None else f"balanced Q={r['Q']}"
                ls = "-" if r["Q"] is None else ("--" if r["Q"] == 1 else ":")
                ax.plot(ts[keep], ys[keep], ls, label=lab)
                col = ax.lines[-1].get_color()
                for t_x, sty in ((r["t_A"], "-"), (r["t_B"], "--")):
                    if t_x:
                        ax.axvline(t_x, color=col, alpha=0.35, lw=0.8, ls=sty)
            ax.set_xscale("log")
            if field == "d_speed":
                ax.set_yscale("symlog", linthresh=0.1)
                if alpha:
                    for a in (alpha, -alpha):
                        ax.axhline(a, color="gray", lw=0.5, ls=":")
            ax.set_title(f"rho = {rho:g}")
            ax.set_xlabel("t = steps x lr")
            ax.axhline(0, color="k", lw=0.5)
        axes[0, 0].set_ylabel(label)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(
            f"{label}(t): two-layer late fusion, toy data (ratio 2), vanilla vs balanced "
            "(vertical lines: t_A solid, t_B dashed)",
            fontsize=10,
        )
        fig.tight_layout()
        path = out_dir / f"{prefix}_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_digits(summary, out_dir, prefix: str = "greedy_digits"):
    """Bar chart of test / unimodal accuracies and d_util per algorithm."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    algs = list(summary)
    keys = ("test_accuracy", "unimodal0_accuracy", "unimodal1_accuracy", "d_util")
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    w = 0.8 / len(algs)
    for j, alg in enumerate(algs):
        m = [summary[alg][k]["mean"] for k in keys]
        s = [summary[alg][k]["std"] for k in keys]
        ax.bar(np.arange(len(keys)) + j * w, m, w, yerr=s, label=alg, capsize=2)
    ax.set_xticks(np.arange(len(keys)) + w * (len(algs) - 1) / 2)
    ax.set_xticklabels(["test acc", "A-only acc (f0')", "B-only acc (f1')", "d_util"])
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=8)
    ax.set_title("digits, two noisy views, two-head ReLU net (mean ± std over seeds)")
    fig.tight_layout()
    path = out_dir / f"{prefix}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------
# reproduce entries
# ------------------------------------------------------------------------------------------------
def _write(out_dir: Path, name: str, rows, summary: dict):
    out_dir.mkdir(parents=True, exist_ok=True)
    if rows:
        with open(out_dir / f"{name}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    with open(out_dir / f"{name}.json", "w") as fh:
        json.dump(summary, fh, indent=2, allow_nan=False, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


def reproduce_toy(out_dir, quick: bool = False) -> dict:
    """``greedy-toy``: digest table 4.6(i) plus d_util / d_speed figures."""
    out_dir = Path(out_dir)
    kw = dict(n_steps=2000, rhos=(0.5, 0.0)) if quick else {}
    rows, run = toy_experiment(**kw)
    figs = plot_toy(rows, run, out_dir)
    summary = {
        "entry": "greedy-toy",
        "units": "steps (t = steps x lr in gradient-flow units, lr = 0.04)",
        "rows": rows,
        "figures": [str(p) for p in figs],
    }
    _write(out_dir, "greedy_toy", rows, summary)
    return summary


def reproduce_ode(out_dir, quick: bool = False) -> dict:
    """``greedy-ode``: the hybrid ODE against the discrete loop (t_A, t_B within 5 %)."""
    out_dir = Path(out_dir)
    kw = dict(rhos=(0.5, 0.0), n_steps=1500) if quick else {}
    rows, _, _ = ode_experiment(**kw)
    summary = {"entry": "greedy-ode", "units": "steps (ODE time / lr)", "rows": rows}
    _write(out_dir, "greedy_ode", rows, summary)
    return summary


def reproduce_deep(out_dir, quick: bool = False) -> dict:
    """``greedy-deep``: digest table 4.6(ii)."""
    out_dir = Path(out_dir)
    kw = dict(fusion_layers=(4,), rhos=(0.5,), n_steps=3000, width=32) if quick else {}
    rows = deep_experiment(**kw)
    summary = {"entry": "greedy-deep", "units": "steps (t = steps x lr, lr = 0.04)", "rows": rows}
    _write(out_dir, "greedy_deep", rows, summary)
    return summary


def reproduce_digits(out_dir, quick: bool = False) -> dict:
    """``greedy-digits``: vanilla vs balanced vs random on two noisy digit views."""
    out_dir = Path(out_dir)
    kw = dict(seeds=2, n_steps=200, width=16, n_save=4) if quick else {}
    rows, summ = digits_experiment(**kw)
    fig = plot_digits(summ, out_dir)
    summary = {"entry": "greedy-digits", "summary": summ, "rows": rows, "figures": [str(fig)]}
    _write(out_dir, "greedy_digits", rows, summary)
    return summary


REPRODUCE = {
    "greedy-toy": reproduce_toy,
    "greedy-ode": reproduce_ode,
    "greedy-deep": reproduce_deep,
    "greedy-digits": reproduce_digits,
}


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
_EPILOG = """\
experiments (reproduce entries greedy-<name>):
  toy      two-layer late fusion, toy data: vanilla vs balanced Q=1,5 (digest 4.6(i)), figures
  ode      the duty-cycle-averaged hybrid ODE vs the discrete loop (t_A, t_B)
  deep     L=4, L_f in {2,3,4} (digest 4.6(ii))
  digits   scikit-learn digits, two noisy views, two-head ReLU net, several seeds
  all      every one of the above

examples:
  mdln greedy toy --out greedy-results        # default folder: mdln-results/greedy
  mdln greedy digits --seeds 3
  mdln greedy all --quick

Times are printed in steps and in gradient-flow units t = steps x lr (lr = 0.04).
"""


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``mdln greedy`` on an argparse subparsers object; returns the subparser."""
    p = subparsers.add_parser(
        "greedy",
        help="greedy multimodal learning (Wu et al. 2022): vanilla vs balanced training",
        description=(
            "Conditional utilization rate, conditional learning speed and balanced "
            "multimodal learning (Wu et al., ICML 2022) on deep linear fusion networks "
            "and on two noisy views of scikit-learn's digits."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "experiment", choices=("toy", "ode", "deep", "digits", "all"), help="which experiment"
    )
    p.add_argument(
        "--out",
        default="mdln-results/greedy",
        metavar="DIR",
        help="output folder (default: mdln-results/greedy)",
    )
    p.add_argument("--quick", action="store_true", help="a small smoke-test version (seconds)")
    p.add_argument(
        "--seeds", type=int, default=None, metavar="N", help="digits: number of seeds (default 5)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=cmd_greedy)
    return p


def _table(rows, cols) -> str:
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[c for c in cols]] + [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    return "\n".join(
        "  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)) for row in cells
    )


_COLS = {
    "greedy-toy": (
        "rho",
        "algorithm",
        "Q",
        "t_A_steps",
        "t_B_steps",
        "digest_t_A_steps",
        "digest_t_B_steps",
        "t_A",
        "t_B",
        "lag_steps",
        "unimodal_steps",
        "inverted_steps",
        "rebalance_steps",
        "final_d_util",
        "final_loss",
        "final_E_g",
    ),
    "greedy-ode": (
        "rho",
        "algorithm",
        "Q",
        "discrete_t_A_steps",
        "ode_t_A_steps",
        "rel_diff_t_A",
        "discrete_t_B_steps",
        "ode_t_B_steps",
        "rel_diff_t_B",
        "ode_switches",
    ),
    "greedy-deep": (
        "rho",
        "fusion_layer",
        "algorithm",
        "Q",
        "t_A_steps",
        "t_B_steps",
        "digest_t_A_steps",
        "digest_t_B_steps",
        "lag_steps",
        "final_d_util",
        "final_loss",
    ),
}


def cmd_greedy(args) -> int:
    """Handler of ``mdln greedy``: runs the chosen entries, writes results into --out."""
    names = list(REPRODUCE) if args.experiment == "all" else [f"greedy-{args.experiment}"]
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer; got {args.seeds}.")
    out = Path(args.out)
    results = {}
    for name in names:
        t0 = time.time()
        if name == "greedy-digits" and args.seeds is not None:
            kw = dict(seeds=2, n_steps=200, width=16, n_save=4) if args.quick else {}
            kw["seeds"] = args.seeds
            rows, summ = digits_experiment(**kw)
            fig = plot_digits(summ, out)
            res = {"entry": name, "summary": summ, "rows": rows, "figures": [str(fig)]}
            _write(out, "greedy_digits", rows, res)
        else:
            res = REPRODUCE[name](out, quick=args.quick)
        res["seconds"] = round(time.time() - t0, 1)
        results[name] = res
        if not args.json:
            print(f"== {name} ({res['seconds']} s; results in {out}/)")
            if name in _COLS:
                print(_table(res["rows"], _COLS[name]))
            else:
                for alg, s in res["summary"].items():
                    print(
                        f"{alg:>9}: "
                        + ", ".join(f"{k} {v['mean']:.3f}±{v['std']:.3f}" for k, v in s.items())
                    )
            if res.get("figures"):
                print("figures: " + ", ".join(res["figures"]))
    if args.json:
        print(json.dumps(results, allow_nan=False, default=_json_default))
    return 0
