"""Greedy learning where it hurts: a coloured-digits setting after Wu et al. 2022's Colored MNIST
(docs/greedy.md, "Coloured digits"; docs/theory.md §6), built from scikit-learn's 8x8 digits.

Modality A is an easy *colour* cue that predicts the label in training (with probability
`p_train`) and not at test (colour drawn independently of the label); modality B is the noisy
digit image. A two-head ReLU `TwoHeadFusionNet` is trained as in `digits` (vanilla, balanced,
random re-balancing; `greedy.train`), and compared with a unimodal ensemble: a colour-only and an
image-only network of the same architecture and optimiser budget, their logits summed. Per
(algorithm, seed): test accuracy (random colours), training accuracy, head and unimodal
(mean-imputed) accuracies on test and training data, d_util, the final conditional learning
speeds s(m1|m0), s(m0|m1) and d_speed, re-balancing steps per cared-for modality.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ... import Dataset, greedy
from .._plotting import new_figure, savefig
from .._style import CATEGORY_COLORS, legend, line_handle, patch_handle
from ._common import finite_or_none
from ._two_head_runs import stack_seeds, trainer, two_head_nets

__all__ = [
    "BASELINES",
    "SUMMARY_KEYS",
    "colored_digits",
    "colored_experiment",
    "colored_findings",
    "plot_colored",
    "summarize_colored",
]

SUMMARY_KEYS = (
    "test_accuracy",
    "train_accuracy",
    "head0_accuracy",
    "head1_accuracy",
    "unimodal0_accuracy",
    "unimodal1_accuracy",
    "unimodal0_train_accuracy",
    "unimodal1_train_accuracy",
    "d_util",
    "d_util_train",
    "final_s_10",
    "final_s_01",
    "final_d_speed",
    "rebalance_steps",
    "care0_steps",
    "care1_steps",
)
"""Summarised per algorithm (mean / std over seeds); a baseline row has the accuracies only."""

BASELINES = ("ensemble", "image-only", "colour-only")
"""The unimodal baselines: the two unimodal networks' summed logits, and each on its own."""

def colored_digits(
    seed: int = 0,
    *,
    p_train: float = 0.95,
    n_train: int = 1000,
    noise_A: float = 0.1,
    noise_B: float = 0.5,
):
    """scikit-learn's 8x8 digits with a spurious colour cue (after Wu et al. 2022's Colored
    MNIST, where the digit's colour predicts the label in training but not at test).

    - Colour c in {0..9}: in training c = label with probability `p_train`, else one of the 9
      other colours uniformly; at test c is uniform over all 10, independent of the label (it
      agrees with the label for ~10 % of the test images).
    - Modality A (10-dim): one-hot(c) plus Gaussian noise of std `noise_A`.
    - Modality B (64-dim): the whole image, pixels in [0, 1], plus Gaussian noise of std
      `noise_B` (harder than the colour).
    - Both standardised with training-set statistics (as `digits_views`); labels one-hot.

    The first `n_train` images of a seed-dependent permutation train, the other 1797 - n_train
    test. Returns `(train, test)` `Dataset`s.
    """
    from sklearn.datasets import load_digits  # the 'repro' extra; ships the data, no download

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    X, y = X[perm] / 16.0, y[perm]
    n = len(X)
    other = (y + rng.integers(1, 10, n)) % 10  # a uniformly random colour != label
    colour = np.where(rng.random(n) < p_train, y, other)
    colour[n_train:] = rng.integers(0, 10, n - n_train)  # test: independent of the label
    A = np.eye(10)[colour] + noise_A * rng.standard_normal((n, 10))
    B = X + noise_B * rng.standard_normal((n, 64))

    def standardise(V):
        m, s = V[:n_train].mean(0), V[:n_train].std(0) + 1e-8
        return (V - m) / s

    A, B, Y = standardise(A), standardise(B), np.eye(10)[y]
    tr = Dataset(jnp.asarray(A[:n_train]), jnp.asarray(B[:n_train]), jnp.asarray(Y[:n_train]))
    te = Dataset(jnp.asarray(A[n_train:]), jnp.asarray(B[n_train:]), jnp.asarray(Y[n_train:]))
    return tr, te


def _accuracy(net, data):
    """Accuracy of the model's prediction (the heads' average) on `data`, one network."""
    (y0, y1), _ = net.forward(data.x_A, data.x_B)
    return jnp.mean(jnp.argmax(y0 + y1, -1) == jnp.argmax(data.y, -1))


def _rows(alg, run, tr, te) -> list[dict]:
    """One row per seed: accuracies, d_util (test and training data), the final conditional
    learning speeds s(m1|m0), s(m0|m1) and d_speed (docs/theory.md §6), re-balancing steps."""
    util = eqx.filter_vmap(lambda n, e, t: greedy.utilization(n, e, train=t))
    u, ut = util(run.final, te, tr), util(run.final, tr, tr)
    train_acc = eqx.filter_vmap(_accuracy)(run.final, tr)
    s_10, s_01, _ = greedy.conditional_speeds(run.M[:, -1])
    counts = np.asarray(run.mode_counts)
    return [
        {
            "algorithm": alg,
            "seed": s,
            "test_accuracy": float(run.perf[s, -1]),
            "train_accuracy": float(train_acc[s]),
            "head0_accuracy": float(u.perf[s, 0]),
            "head1_accuracy": float(u.perf[s, 1]),
            "unimodal0_accuracy": float(u.perf_imputed[s, 0]),
            "unimodal1_accuracy": float(u.perf_imputed[s, 1]),
            "unimodal0_train_accuracy": float(ut.perf_imputed[s, 0]),
            "unimodal1_train_accuracy": float(ut.perf_imputed[s, 1]),
            "d_util": float(u.d_util[s]),
            "d_util_train": float(ut.d_util[s]),
            "final_s_10": finite_or_none(s_10[s]),
            "final_s_01": finite_or_none(s_01[s]),
            "final_d_speed": finite_or_none(run.d_speed[s, -1]),
            "rebalance_steps": int(counts[s, 1] + counts[s, 2]),
            "care0_steps": int(counts[s, 1]),
            "care1_steps": int(counts[s, 2]),
            "final_train_loss": float(run.loss[s, -1]),
        }
        for s in range(counts.shape[0])
    ]


def _only(data: Dataset, keep: str, ref: Dataset) -> Dataset:
    """`data` with the modality other than `keep` ("A" or "B") replaced by its mean over the
    training set `ref` (0 up to rounding: both are standardised)."""
    if keep == "A":
        mean = jnp.mean(ref.x_B, axis=-2, keepdims=True)
        return Dataset(data.x_A, jnp.broadcast_to(mean, data.x_B.shape), data.y)
    mean = jnp.mean(ref.x_A, axis=-2, keepdims=True)
    return Dataset(jnp.broadcast_to(mean, data.x_A.shape), data.x_B, data.y)


def _baseline_rows(fit, nets, tr, te) -> list[dict]:
    """The unimodal baselines: a colour-only (A) and an image-only (B) network, each the same
    two-head net trained (vanilla, same budget) with the other modality at its training mean;
    the ensemble sums their logits (heads' averages)."""
    logits, loss = {}, {}
    for keep in ("A", "B"):
        run = fit(nets, _only(tr, keep, tr), _only(te, keep, tr), "vanilla")
        loss[keep] = np.asarray(run.loss[:, -1])
        for name, d in (("train", tr), ("test", te)):
            (y0, y1), _ = eqx.filter_vmap(lambda n, x: n.forward(x.x_A, x.x_B))(
                run.final, _only(d, keep, tr)
            )
            logits[keep, name] = 0.5 * (y0 + y1)
    labels = {"train": jnp.argmax(tr.y, -1), "test": jnp.argmax(te.y, -1)}
    acc = lambda z, name: np.asarray(jnp.mean(jnp.argmax(z, -1) == labels[name], -1))  # noqa: E731
    rows = []
    for alg, parts in (("ensemble", "AB"), ("image-only", "B"), ("colour-only", "A")):
        a = {nm: acc(sum(logits[k, nm] for k in parts), nm) for nm in ("test", "train")}
        for s in range(len(a["test"])):
            rows.append({"algorithm": alg, "seed": s, "test_accuracy": float(a["test"][s]),
                         "train_accuracy": float(a["train"][s])})  # fmt: skip
            if len(parts) == 1:
                rows[-1]["final_train_loss"] = float(loss[parts][s])
    return rows


def summarize_colored(rows) -> dict:
    """Mean and std over seeds of each of `SUMMARY_KEYS` a row carries, per algorithm (in row
    order); `n` is the number of seeds with a finite value (d_speed can be undefined)."""
    summary = {}
    for alg in dict.fromkeys(r["algorithm"] for r in rows):
        sel = [r for r in rows if r["algorithm"] == alg]
        summary[alg] = {}
        for k in SUMMARY_KEYS:
            v = [r[k] for r in sel if r.get(k) is not None and np.isfinite(r[k])]
            if v:
                summary[alg][k] = {"mean": float(np.mean(v)), "std": float(np.std(v)),
                                   "n": len(v)}  # fmt: skip
    return summary


_CONTRASTS = (
    ("balanced", "vanilla"),
    ("random", "vanilla"),
    ("ensemble", "vanilla"),
    ("image-only", "vanilla"),
    ("ensemble", "image-only"),
)


def colored_findings(rows) -> dict:
    """Paired test-accuracy differences ``"a - b"`` over seeds (every model of a seed sees the
    same data): mean, std, the number of seeds in which a beats b, and `n`; plus
    ``balancing_improves_test_accuracy`` (Wu et al. 2022's Colored-MNIST finding): True iff
    balanced beats vanilla in every seed."""
    acc = {}
    for r in rows:
        acc.setdefault(r["algorithm"], {})[r["seed"]] = r["test_accuracy"]
    out = {}
    for a, b in _CONTRASTS:
        if a in acc and b in acc:
            d = np.array([acc[a][s] - acc[b][s] for s in sorted(acc[a]) if s in acc[b]])
            out[f"{a} - {b}"] = {"mean": float(d.mean()), "std": float(d.std()),
                                 "wins": int((d > 0).sum()), "n": len(d)}  # fmt: skip
    bv = out.get("balanced - vanilla")
    out["balancing_improves_test_accuracy"] = None if bv is None else bv["wins"] == bv["n"]
    return out


def colored_experiment(
    *,
    seeds: int = 5,
    p_train: float = 0.95,
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
    """Two-head ReLU network on coloured digits (`colored_digits`): `algorithms` (vanilla,
    balanced, random re-balancing; `greedy.train` with minibatch SGD on the sum of the heads'
    cross-entropies, warm-up one epoch by default, as `digits_experiment`) and the unimodal
    baselines `BASELINES`, over `seeds` seeds (data split, colours, noise and init per seed;
    every model of a seed starts from the same network).

    Returns `(rows, summary)`: one row per (algorithm or baseline, seed), mean / std per
    algorithm (`summarize_colored`).
    """
    views = [
        colored_digits(s, p_train=p_train, noise_A=noise_A, noise_B=noise_B) for s in range(seeds)
    ]
    tr, te = stack_seeds(views)
    warmup = -(-tr.x_A.shape[1] // batch_size) if warmup is None else warmup
    nets = two_head_nets(seeds, width, init_scale, d_A=10, d_B=64)
    keys = jax.random.split(jax.random.key(99), seeds)
    fit = trainer(keys, lr=lr, n_steps=n_steps, warmup=warmup, batch_size=batch_size, Q=Q,
                  alpha=alpha, n_save=n_save)  # fmt: skip
    rows = []
    for alg in algorithms:
        rows += _rows(alg, fit(nets, tr, te, alg), tr, te)
    rows += _baseline_rows(fit, nets, tr, te)
    return rows, summarize_colored(rows)


def _bars(ax, summary, algs, keys, ticks, ylabel, xlabel):
    w = 0.8 / len(algs)
    for j, alg in enumerate(algs):
        s = [summary[alg].get(k, {"mean": np.nan, "std": np.nan}) for k in keys]
        ax.bar(np.arange(len(keys)) + j * w, [v["mean"] for v in s], w,
               yerr=[v["std"] for v in s], color=CATEGORY_COLORS[alg], capsize=2)  # fmt: skip
    ax.set_xticks(np.arange(len(keys)) + w * (len(algs) - 1) / 2, ticks)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)


def plot_colored(summary, out_dir, prefix: str = "greedy_colored"):
    """Three panels, mean +- std over seeds (as the docs/greedy.md table): accuracy on test
    (random colours) and training data per model, baselines included; d_util on test and
    training data; the final conditional learning speeds s(B|A), s(A|B) and d_speed. Returns
    the path."""
    algs = list(summary)
    trained = [a for a in algs if a not in BASELINES]
    fig, axes = new_figure((11.5, 3.6), 1, 3, width_ratios=[3, 1.6, 1.8])
    _bars(axes[0], summary, algs, ("test_accuracy", "train_accuracy"),
          ["test (random colour)", "train (colour = label\nfor most images)"],
          "accuracy of the prediction", "evaluation data")  # fmt: skip
    axes[0].axhline(0.1, color="0.5", lw=0.8, ls=":")
    axes[0].set_ylim(0, 1.05)
    _bars(axes[1], summary, trained, ("d_util", "d_util_train"), ["test", "train"],
          "$d_{util} = u(B|A) - u(A|B)$", "evaluation data")  # fmt: skip
    _bars(axes[2], summary, trained, ("final_s_10", "final_s_01", "final_d_speed"),
          ["$s(B|A)$", "$s(A|B)$", "$d_{speed}$"], "log$_{10}$ units",
          "end of training")  # fmt: skip
    for ax in axes[1:]:
        ax.axhline(0.0, color="0.3", lw=0.6)
    axes[0].set_title("accuracy", fontsize=10)
    axes[1].set_title("conditional utilization", fontsize=10)
    axes[2].set_title("learning speed", fontsize=10)
    handles = [patch_handle(a, CATEGORY_COLORS[a]) for a in algs]
    handles.append(line_handle("$\\pm$ std over seeds", "k", ls="none", marker="_", ms=6))
    handles.append(line_handle("chance (0.1)", "0.5", ls=":", lw=0.8))
    legend(fig, handles, loc="outside right upper", fontsize=8)
    fig.suptitle("coloured digits: A = colour cue (spurious at test), B = noisy image; "
                 "two-head ReLU net (bars: mean over seeds)", fontsize=10)  # fmt: skip
    return savefig(fig, Path(out_dir) / f"{prefix}.png", dpi=110)
