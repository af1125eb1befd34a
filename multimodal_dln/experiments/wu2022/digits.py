"""A small real two-view data set for Wu et al. 2022's diagnostics and balanced training
(docs/theory.md §6): scikit-learn's 8x8 digits (bundled with scikit-learn, no download) split
into two noisy views (left / right image half, Gaussian pixel noise of different strength), a
two-head ReLU `TwoHeadFusionNet` trained with minibatch SGD on the sum of the heads'
cross-entropies; vanilla vs balanced vs random re-balancing over several seeds: test accuracy,
head and unimodal (mean-imputed) accuracies, d_util."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ... import Dataset, greedy
from .._plotting import new_figure, savefig
from .._style import legend, line_handle, patch_handle, value_color
from ._common import finite_or_none
from ._two_head_runs import stack_seeds, trainer, two_head_nets

__all__ = ["SUMMARY_KEYS", "digits_experiment", "digits_views", "plot_digits"]

SUMMARY_KEYS = (
    "test_accuracy",
    "head0_accuracy",
    "head1_accuracy",
    "unimodal0_accuracy",
    "unimodal1_accuracy",
    "d_util",
)


def digits_views(seed: int = 0, *, noise_A: float = 0.1, noise_B: float = 0.5, n_train: int = 1000):
    """scikit-learn's 8x8 digits as two noisy views: A = left image half (32 pixels), B = right
    half, pixel values in [0, 1] plus Gaussian noise (std `noise_A`, `noise_B`), standardised
    with training-set statistics; labels one-hot (10 classes). Returns `(train, test)`."""
    from sklearn.datasets import load_digits  # the 'repro' extra; ships the data, no download

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


def _rows(alg, run, tr, te) -> list[dict]:
    """One row per seed: accuracies, conditional utilization (docs/theory.md §6), run end."""
    u = eqx.filter_vmap(lambda n, e, t: greedy.utilization(n, e, train=t))(run.final, te, tr)
    counts = np.asarray(run.mode_counts)
    return [
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
            "final_d_speed": finite_or_none(run.d_speed[s, -1]),
            "rebalance_steps": int(counts[s, 1] + counts[s, 2]),
            "final_train_loss": float(run.loss[s, -1]),
        }
        for s in range(counts.shape[0])
    ]


def summarize_digits(rows, algorithms) -> dict:
    """Mean and std over seeds of `SUMMARY_KEYS`, per algorithm."""
    summary = {}
    for alg in algorithms:
        sel = [r for r in rows if r["algorithm"] == alg]
        summary[alg] = {
            k: {
                "mean": float(np.mean([r[k] for r in sel])),
                "std": float(np.std([r[k] for r in sel])),
            }
            for k in SUMMARY_KEYS
        }
    return summary


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

    Minibatch SGD, loss = sum of the heads' cross-entropies (the authors' blend loss), warm-up
    one epoch (default). Returns `(rows, summary)`: one row per (algorithm, seed) and mean / std
    per algorithm.
    """
    views = [digits_views(s, noise_A=noise_A, noise_B=noise_B) for s in range(seeds)]
    tr, te = stack_seeds(views)
    warmup = -(-tr.x_A.shape[1] // batch_size) if warmup is None else warmup
    nets = two_head_nets(seeds, width, init_scale, d_A=32, d_B=32)
    keys = jax.random.split(jax.random.key(99), seeds)
    fit = trainer(keys, lr=lr, n_steps=n_steps, warmup=warmup, batch_size=batch_size, Q=Q,
                  alpha=alpha, n_save=n_save)  # fmt: skip
    rows = []
    for alg in algorithms:
        rows += _rows(alg, fit(nets, tr, te, alg), tr, te)
    return rows, summarize_digits(rows, algorithms)


def plot_digits(summary, out_dir, prefix: str = "greedy_digits"):
    """Two panels, each with its own labelled axis: test / unimodal accuracies (left) and
    d_util (right) per algorithm, mean +- std over seeds (as the docs/greedy.md table);
    returns the path."""
    algs = list(summary)
    panels = (
        (("test_accuracy", "unimodal0_accuracy", "unimodal1_accuracy"),
         ["both views", "A only ($f_0'$)", "B only ($f_1'$)"], "test accuracy",
         "test input"),
        (("d_util",), [], "$d_{util} = u(B|A) - u(A|B)$", ""),
    )  # fmt: skip
    fig, axes = new_figure((8.4, 3.4), 1, 2, width_ratios=[3, 1.3])
    w = 0.8 / len(algs)
    for ax, (keys, ticks, ylabel, xlabel) in zip(axes, panels, strict=True):
        for j, alg in enumerate(algs):
            m = [summary[alg][k]["mean"] for k in keys]
            s = [summary[alg][k]["std"] for k in keys]
            color = value_color("algorithm", alg)
            ax.bar(np.arange(len(keys)) + j * w, m, w, yerr=s, color=color, capsize=2)
        ax.set_xticks(np.arange(len(ticks)) + w * (len(algs) - 1) / 2, ticks)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("accuracy", fontsize=10)
    axes[1].set_title("conditional utilization", fontsize=10)
    handles = [patch_handle(alg, value_color("algorithm", alg)) for alg in algs]
    handles.append(line_handle("$\\pm$ std over seeds", "k", ls="none", marker="_", ms=6))
    legend(fig, handles, loc="outside right upper", fontsize=8)
    fig.suptitle("digits, two noisy views, two-head ReLU net (bars: mean over seeds)",
                 fontsize=10)  # fmt: skip
    return savefig(fig, Path(out_dir) / f"{prefix}.png", dpi=110)
