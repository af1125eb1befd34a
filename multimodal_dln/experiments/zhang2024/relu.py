"""ReLU networks (F8), where no closed form exists: the heterogeneous XOR task and noisy digits.

- ``xor``: two-layer early vs late fusion on y = x_A + XOR(x_B). Zhang et al. 2024 report that
  late fusion always forms the four XOR features while early fusion does not, and can stall on
  the linear modality for large sigma_A.
- ``digits``: the authors' noisy-MNIST fusion-depth experiment, on scikit-learn's bundled 8x8
  digits: the later the fusion layer, the longer the weak view's accuracy stays at chance.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ... import Dataset, gradient_descent, sweeps
from .._plotting import COLORS, new_figure
from .._style import TIME_LABEL, epochs_to_time, legend, line_handle, value_color
from ._common import AUTHORS_LR, built, concat

__all__ = [
    "plot_digits",
    "plot_xor",
    "simulate_digits",
    "simulate_xor",
    "summarize_digits",
    "summarize_xor",
    "xor_dataset",
]

_SIGMAS = [1.0, 2.0, 3.0]
_FUSIONS = ((1, "early"), (2, "late"))


# ------------------------------------------------------------------------------------------------
# heterogeneous XOR
# ------------------------------------------------------------------------------------------------
def xor_dataset(key, sigma_A: float, n: int) -> Dataset:
    """The authors' heterogeneous XOR data: x_B in {(+-1, +-1)} (each n/4 times), XOR(x_B) =
    -x_B1 x_B2, x_A ~ N(0, sigma_A^2), y = x_A + XOR(x_B). Modality A is the scalar Gaussian,
    B the XOR input."""
    corners = jnp.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    x_B = jnp.tile(corners, (n // 4, 1))
    x_A = sigma_A * jax.random.normal(key, (x_B.shape[0], 1))
    y = x_A + (-x_B[:, :1] * x_B[:, 1:])
    return Dataset(x_A, x_B, y)


def xor_features(w_B, w_out):
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


def _xor_settings(quick: bool) -> dict:
    """Width 100 (quick: 32), 1024 samples (quick: 256), full-batch GD at lr AUTHORS_LR for
    20000 epochs (quick: 4000); entrywise init 1e-3 (the authors' XOR init is not known).
    (Adaptive gradient flow is impractical here: the ReLU kinks force tiny steps.)"""
    return {
        "width": 32 if quick else 100,
        "samples": 256 if quick else 1024,
        "init": "entrywise 1e-3",
        "seeds": 1 if quick else 2,
        "optimizer": f"GD lr {AUTHORS_LR}",
        "epochs": 4000 if quick else 20000,
    }


def _final_weights(fin, i, Lf):
    """(B's first-layer weights, A's weight per unit, output weights) of member i."""
    if Lf == 1:
        wB = np.asarray(fin.fusion_B[i])
        return wB, np.asarray(fin.fusion_A[i])[:, 0], np.asarray(fin.shared[0][i])[0]
    wB = np.asarray(fin.branch_B[0][i])
    return wB, np.zeros(wB.shape[0]), np.asarray(fin.fusion_B[i])[0]


def simulate_xor(ctx) -> dict:
    """sigma_A in {1, 2, 3} x seeds, early (L_f = 1) and late (L_f = 2) fusion; member i's
    network (sweep engine, `sweeps.inputs`) has seed i, its data key 100 + its grid seed."""
    s = _xor_settings(ctx.quick)
    grid = [(sg, k) for sg in _SIGMAS for k in range(s["seeds"])]
    data = concat(
        [
            jax.tree.map(lambda a: a[None], xor_dataset(jax.random.key(100 + k), sg, s["samples"]))
            for sg, k in grid
        ]
    )
    out = {"settings": s, "grid": grid}
    for Lf, name in _FUSIONS:
        g = built(
            sweeps.zipped(dataset=data, seed=range(len(grid)))
            * sweeps.product(
                depth=2, fusion_layer=Lf, width=s["width"], init="entrywise", init_scale=1e-3,
                activation="relu",
            )
        )  # fmt: skip
        gd_kw = dict(lr=AUTHORS_LR, n_steps=s["epochs"], n_save=200, converge_rtol=1e-8)
        traj = gradient_descent(g.nets, g.objective, **gd_kw, on_divergence="raise")
        out[name] = {
            "ts": np.asarray(traj.ts),
            "loss": np.asarray(traj.loss),
            "t_end": np.asarray(traj.t_end),
            "converged": np.asarray(traj.converged),
            "weights": [_final_weights(traj.final, i, Lf) for i in range(len(grid))],
        }
        ctx.log(f"  {name} fusion done")
    return out


def summarize_xor(sim) -> tuple[list[dict], dict]:
    """Rows: loss curves (every 4th save) and every unit's weights; summary per run: final loss,
    the linear-only level, XOR-feature fraction and directions used."""
    rows, summary = [], {"settings": sim["settings"]}
    for _, name in _FUSIONS:
        d = sim[name]
        for i, (sg, k) in enumerate(sim["grid"]):
            wB, wA, wout = d["weights"][i]
            frac, used = xor_features(wB, wout)
            loss = d["loss"][i]
            summary[f"{name}_sigmaA={sg:g}_seed={k}"] = {
                "final_loss_normalized": float(loss[-1] / loss[0]),
                "linear_only_level": float(0.5 / (0.5 * (sg**2 + 1))),
                "xor_feature_fraction": frac,
                "xor_directions_used": used,
                "epochs_run": float(d["t_end"][i] / AUTHORS_LR),
                "converged": bool(d["converged"][i]),
            }
            base = {"fusion": name, "sigma_A": sg, "seed": k}
            rows += [
                base | {"epoch": t / AUTHORS_LR, "loss_normalized": v / loss[0]}
                for t, v in zip(d["ts"][i][::4], loss[::4], strict=True)
            ]
            rows += [
                base
                | {"unit": u, "w_B1": wB[u, 0], "w_B2": wB[u, 1], "w_A": wA[u], "w_out": wout[u]}
                for u in range(wB.shape[0])
            ]
    return rows, summary


def plot_xor(rows, summary):
    """Per fusion (row): the B inputs' first-layer weights (W_B1, W_B2) of each hidden unit
    (scaled by its output weight) at seed 0, coloured by its A weight x |output weight| (early
    fusion, as the authors') or by its output weight (late fusion, whose B units have no A
    weight), each divided by the panel's largest magnitude (one colour bar per row); right:
    loss / L(0) against gradient-flow time t (GD at lr AUTHORS_LR), one colour per sigma_A."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig, axes = new_figure((13, 6.0), 2, 4)
    cbar_label = {1: "unit's A weight x |output weight|\n(/ largest in panel)",
                  2: "unit's output weight\n(/ largest in panel)"}  # fmt: skip
    for r, (Lf, name) in enumerate(_FUSIONS):
        for j, sg in enumerate(_SIGMAS):
            sel = [x for x in rows if x["fusion"] == name and x["sigma_A"] == sg and x["seed"] == 0]
            units = [x for x in sel if "unit" in x]
            wout = np.array([x["w_out"] for x in units])
            sc = np.abs(wout)[:, None] * np.array([[x["w_B1"], x["w_B2"]] for x in units])
            col = np.array([x["w_A"] for x in units]) * np.abs(wout) if Lf == 1 else wout
            cmax = np.abs(col).max() + 1e-12
            lim = max(0.3, 1.1 * np.abs(sc).max())
            ax = axes[r, j]
            ax.scatter(sc[:, 0], sc[:, 1], c=col / cmax, cmap="coolwarm", s=10, vmin=-1, vmax=1)
            ax.set_xlabel("$|w_{out}|\\,W_{B1}$", fontsize=8)
            ax.set_ylabel("$|w_{out}|\\,W_{B2}$", fontsize=8)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            used = summary[f"{name}_sigmaA={sg:g}_seed=0"]["xor_directions_used"]
            ax.set_title(f"{name} fusion, $\\sigma_A$ = {sg:g}: {used} XOR directions",
                         fontsize=8)  # fmt: skip
            curve = [x for x in sel if "epoch" in x]
            axes[r, 3].plot(
                epochs_to_time([x["epoch"] for x in curve]),
                [x["loss_normalized"] for x in curve],
                color=value_color("sigma_A", sg),
            )
        sm = ScalarMappable(Normalize(-1, 1), "coolwarm")
        fig.colorbar(sm, ax=axes[r, :3].tolist(), label=cbar_label[Lf], shrink=0.9)
        ax = axes[r, 3]
        ax.set_xscale("log")
        ax.set_title(f"{name} fusion: training loss (seed 0)", fontsize=8)
        ax.set_xlabel(TIME_LABEL, fontsize=8)
        ax.set_ylabel("loss / $L(0)$", fontsize=8)
        legend(ax, [line_handle(f"$\\sigma_A$ = {sg:g}", value_color("sigma_A", sg))
                    for sg in _SIGMAS], fontsize=6)  # fmt: skip
    return fig


# ------------------------------------------------------------------------------------------------
# noisy digits
# ------------------------------------------------------------------------------------------------
def _digits_views(key, x, p_a_clean=0.8, p_both=0.2):
    """Two views of each image, the authors' noisy-MNIST corruption as coded: A ~ Bern(0.8)
    decides A clean & B corrupted, else AB ~ Bern(0.2) decides both clean, else B clean & A
    corrupted (net: A clean 80 %, B clean 16 %, both 4 %); corrupted = 0.1 x + N(0, 0.15^2)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n = x.shape[0]
    a = jax.random.bernoulli(k1, p_a_clean, (n, 1))
    ab = jax.random.bernoulli(k2, p_both, (n, 1))
    noisy_A = 0.1 * x + 0.15 * jax.random.normal(k3, x.shape)
    noisy_B = 0.1 * x + 0.15 * jax.random.normal(k4, x.shape)
    x_A = jnp.where(a | ab, x, noisy_A)
    x_B = jnp.where(~a | ab, x, noisy_B)
    return x_A, x_B


def _digits_settings(quick: bool) -> dict:
    return {
        "width": 64,
        "epochs": 800 if quick else 3000,
        "lr": 0.2,
        "init": "entrywise 0.03",
        "train": 1200,
        "test": 597,
        "loss": "MSE on one-hot",
        "chunk": 40 if quick else 50,
    }


def _train_digits(net, data, test, s) -> list[dict]:
    """Full-batch GD in chunks; test accuracy (A only, B only, both views) before each chunk."""
    x_te, xa_te, xb_te, y_te = test

    def acc(a, b):
        pred = jax.vmap(net)(a, b)
        return float(np.mean(np.argmax(np.asarray(pred), axis=1) == y_te))

    hist, ep, zeros = [], 0, jnp.zeros_like(x_te)
    while True:
        rec = {"epoch": ep, "acc_A": acc(x_te, zeros), "acc_B": acc(zeros, x_te)}
        hist.append(rec | {"acc_AB": acc(xa_te, xb_te)})
        if ep >= s["epochs"]:
            break
        gd_kw = dict(lr=s["lr"], n_steps=s["chunk"], n_save=3, converge_rtol=1e-12)
        traj = gradient_descent(net, data, **gd_kw, on_divergence="raise")
        hist[-1]["loss"] = float(traj.loss[0])
        net, ep = traj.final, ep + s["chunk"]
    hist[-1]["loss"] = float(traj.loss[-1])
    return hist


def simulate_digits(ctx) -> dict:
    """Deep ReLU FusionDLN, L = 4, L_f in {1, 2, 3, 4}, width 64, entrywise init 0.03 (small,
    ~0.4 x PyTorch's default 1/sqrt(3 fan_in): the unimodal phase is a small-init effect; at
    the default scale B lags by < 100 epochs for every L_f), MSE on one-hot targets (the
    package's loss; the authors used cross-entropy), full-batch GD at lr 0.2 on 1200 training
    images for 3000 epochs (quick: 800), test accuracy on the other 597 every 50 epochs (quick:
    40) with x_B = 0 ("A"), x_A = 0 ("B"), both views as in training ("A&B"). The network of
    L_f is built by the sweep engine (`sweeps.inputs`) with seed L_f."""
    from sklearn.datasets import load_digits

    s = _digits_settings(ctx.quick)
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean()) / X.std()
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:1200], perm[1200:]
    xa_tr, xb_tr = _digits_views(jax.random.key(1), jnp.asarray(X[tr]))
    xa_te, xb_te = _digits_views(jax.random.key(2), jnp.asarray(X[te]))
    data = Dataset(xa_tr, xb_tr, jnp.eye(10)[y[tr]])
    test = (jnp.asarray(X[te]), xa_te, xb_te, np.asarray(y[te]))
    hist = {}
    one = jax.tree.map(lambda a: a[None], data)
    for Lf in (1, 2, 3, 4):
        g = built(
            sweeps.product(
                dataset=one, depth=4, fusion_layer=Lf, width=s["width"], init="entrywise",
                init_scale=0.03, activation="relu", seed=Lf,
            )
        )  # fmt: skip
        net = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, g.nets)
        hist[Lf] = _train_digits(net, data, test, s)
        h = hist[Lf][-1]
        ctx.log(f"  L_f = {Lf}: acc A {h['acc_A']:.2f}, B {h['acc_B']:.2f}, A&B {h['acc_AB']:.2f}")
    return {"settings": s, "history": hist}


def summarize_digits(sim) -> tuple[list[dict], dict]:
    """Rows: the accuracy history per L_f; summary: final accuracies and the epoch each view's
    accuracy first reaches 50 %."""
    settings = {k: v for k, v in sim["settings"].items() if k != "chunk"}
    rows, summary = [], {"settings": settings}
    for Lf, hist in sim["history"].items():
        rows += [{"L_f": Lf} | h for h in hist]
        ep = np.array([h["epoch"] for h in hist])

        def first(key, thr=0.5, hist=hist, ep=ep):
            i = np.flatnonzero(np.array([h[key] for h in hist]) >= thr)
            return float(ep[i[0]]) if i.size else None

        summary[f"L_f={Lf}"] = {
            "final_acc_A": float(hist[-1]["acc_A"]),
            "final_acc_B": float(hist[-1]["acc_B"]),
            "final_acc_AB": float(hist[-1]["acc_AB"]),
            "epoch_acc_A_50pct": first("acc_A"),
            "epoch_acc_B_50pct": first("acc_B"),
        }
    return rows, summary


def plot_digits(rows, summary=None):
    """Test accuracy per view (A blue, B fuchsia, both views dashed) and the training loss
    (right axis, thin black) per fusion layer, against gradient-flow time t = epochs x lr."""
    lr = (summary or {}).get("settings", {}).get("lr", _digits_settings(False)["lr"])
    fig, axes = new_figure((13, 3.4), 1, 4, sharey=True)
    twins = []
    for Lf in (1, 2, 3, 4):
        sel = [r for r in rows if r["L_f"] == Lf]
        t = epochs_to_time([r["epoch"] for r in sel], lr)
        loss = np.array([r.get("loss", np.nan) for r in sel])
        ax = axes[Lf - 1]
        ax.plot(t, [r["acc_A"] for r in sel], color=COLORS["A"])
        ax.plot(t, [r["acc_B"] for r in sel], color=COLORS["B"])
        ax.plot(t, [r["acc_AB"] for r in sel], "k--", lw=1)
        ax.set_ylim(0, 1.02)
        tw = ax.twinx()
        tw.plot(t, loss / np.nanmax(loss), color=COLORS["loss"], lw=0.8, alpha=0.6)
        tw.set_ylim(0, 1.02)
        twins.append(tw)
        ax.set_title(f"L = 4, $L_f$ = {Lf}", fontsize=9)
        ax.set_xlabel(TIME_LABEL, fontsize=8)
    axes[0].set_ylabel("test accuracy")
    for tw in twins[:-1]:
        tw.tick_params(labelright=False)
    twins[-1].set_ylabel("training loss / max")
    legend(axes[0], [
        line_handle("input A only", COLORS["A"]),
        line_handle("input B only", COLORS["B"]),
        line_handle("both views", "k", ls="--", lw=1),
        line_handle("training loss (right axis)", COLORS["loss"], lw=0.8, alpha=0.6),
    ], loc="center right")  # fmt: skip
    return fig
