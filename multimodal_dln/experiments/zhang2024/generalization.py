"""Under- vs over-parametrized two-layer fusion (F7; docs/theory.md §5).

Loss (black) and E_g (red) against epoch for two-layer early and late fusion at P = 70
(over-parametrized: P < d = 100) and P = 700; noise 0.5, width 100 (quick: 16), entrywise init
1e-9, gradient flow on the sample statistics to convergence. Dashed: the predicted final E_g
(early: the min-norm interpolant, exact; late: the exact reduced dynamics from a balanced start
along the drives at the same init, no closed form); dotted: E_g at the sample's unimodal point
M_A. Data drawn with key 202310 (the authors' NumPy seed cannot be reproduced in JAX, so the
numbers differ from theirs). The networks are built by the sweep engine (`sweeps.inputs`; the
P = 70 and P = 700 runs have network seeds 0 and 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ... import Statistics, generalization_error_curve, gradient_flow, sample, sweeps, theory
from .._plotting import COLORS, new_figure
from .._style import MARKS, TIME_LABEL, epochs_to_time, legend, line_handle
from ._common import AUTHORS_LR, built, concat, entrywise_effective_scale

__all__ = [
    "plot_generalization",
    "simulate_generalization",
    "single_population",
    "summarize_generalization",
]

_NS = (70, 700)
_FUSIONS = ((1, "early"), (2, "late"))


def single_population(d: int = 100, noise: float = 0.5) -> Statistics:
    """The authors' multi-dimensional 'single' data (docs/theory.md §5): Sigma =
    diag(3 I_{d/2}, I_{d/2}), w* = 0.1 * 1, label noise N(0, noise^2). The variance-3 block
    (learned first) is modality A."""
    h = d // 2
    sxx = jnp.diag(jnp.concatenate([jnp.full(h, 3.0), jnp.ones(h)]))
    w = jnp.full((1, d), 0.1)
    return Statistics(sxx, w @ sxx, w @ sxx @ w.T + noise**2, d_A=h)


def simulate_generalization(ctx) -> dict:
    """Early and late fusion on the two samples; the E_g curves and the predictions."""
    pop = single_population()
    width = 16 if ctx.quick else 100
    datasets = [sample(jax.random.fold_in(jax.random.key(202310), n), pop, n) for n in _NS]
    emp = [d.statistics() for d in datasets]
    stats = concat([jax.tree.map(lambda a: a[None], e) for e in emp])
    out = {"width": width}
    for Lf, name in _FUSIONS:
        g = built(
            sweeps.zipped(statistics=stats, seed=[0, 1])
            * sweeps.product(
                depth=2, fusion_layer=Lf, width=width, init="entrywise", init_scale=1e-9
            )
        )
        traj = gradient_flow(g.nets, g.objective, t_max=jnp.full(2, 20_000.0), n_save=1024)
        out[name] = {
            "ts": np.asarray(traj.ts),
            "loss": np.asarray(traj.loss),
            "E_g": np.asarray(generalization_error_curve(traj, pop)),
            "final_weights": np.asarray(traj.weights[:, -1]),
            "converged": np.asarray(traj.converged),
            "t_end": np.asarray(traj.t_end),
        }
        ctx.log(f"  {name} fusion done")
    eff_u0 = entrywise_effective_scale(1e-9, width)
    late_pred = [theory.late_fusion_final_solution(e, init_scale=eff_u0, t_max=1e5) for e in emp]
    out["predictions"] = [
        {
            "min_norm_E_g": float(theory.early_fusion_final_error(e, pop)),
            "late_reduced_prediction_E_g": float(theory.generalization_error(w, pop)),
            "late_reduced_W_norms": [
                float(np.linalg.norm(np.asarray(w)[:, :50])),
                float(np.linalg.norm(np.asarray(w)[:, 50:])),
            ],
            "E_g_unimodal_M_A": float(theory.unimodal_generalization_error(e, pop)),
        }
        for e, w in zip(emp, late_pred, strict=True)
    ]
    return out


def _run_summary(d, j, predicted, e_uni) -> dict:
    ts, eg, w = d["ts"][j] / AUTHORS_LR, d["E_g"][j], d["final_weights"][j]
    at1200 = int(np.searchsorted(ts, 1200.0))
    return {
        "final_E_g": float(eg[-1]),
        "E_g_at_1200_epochs": float(eg[min(at1200, len(ts) - 1)]),
        "min_E_g": float(eg.min()),
        "epoch_of_min_E_g": float(ts[int(np.argmin(eg))]),
        "converged": bool(d["converged"][j]),
        "t_end_epochs": float(d["t_end"][j] / AUTHORS_LR),
        "norm_W_A": float(np.linalg.norm(w[:, :50])),
        "norm_W_B": float(np.linalg.norm(w[:, 50:])),
        "predicted_final_E_g": predicted,
        "E_g_unimodal_M_A": e_uni,
    }


def summarize_generalization(sim) -> tuple[list[dict], dict]:
    """Rows (every 300th point of each curve) and per run: final / minimal E_g, the norms of
    W_A, W_B and the predictions."""
    settings = {"width": sim["width"], "init": "entrywise 1e-9", "noise": 0.5, "d": 100, "n": _NS}
    rows, summary = [], {"settings": settings}
    for j, n in enumerate(_NS):
        p = sim["predictions"][j]
        for _, name in _FUSIONS:
            d = sim[name]
            ts, loss = d["ts"][j] / AUTHORS_LR, d["loss"][j]
            step = max(1, len(ts) // 300)
            rows += [
                {
                    "fusion": name,
                    "n": n,
                    "epoch": ts[k],
                    "loss_normalized": loss[k] / loss[0],
                    "E_g": d["E_g"][j, k],
                }
                for k in range(0, len(ts), step)
            ]
            predicted = p["min_norm_E_g" if name == "early" else "late_reduced_prediction_E_g"]
            summary[f"{name}_n={n}"] = _run_summary(d, j, predicted, p["E_g_unimodal_M_A"])
        summary[f"n={n}"] = {k: v for k, v in p.items() if k != "E_g_unimodal_M_A"}
    return rows, summary


def plot_generalization(rows, summary):
    """F7: one panel per (fusion, P): loss / L(0), E_g, predicted final E_g (dashed) and the
    unimodal E_g (dotted) against gradient-flow time t."""
    fig, axes = new_figure((9.6, 5.6), 2, 2, sharex=True, sharey=True)
    linthresh = float(epochs_to_time(100.0))
    for j, n in enumerate(_NS):
        for i, (_, name) in enumerate(_FUSIONS):
            sel = [r for r in rows if r["fusion"] == name and r["n"] == n]
            ts = epochs_to_time([r["epoch"] for r in sel])
            s = summary[f"{name}_n={n}"]
            ax = axes[i, j]
            ax.plot(ts, [r["loss_normalized"] for r in sel], color=COLORS["loss"], lw=1.3)
            ax.plot(ts, [r["E_g"] for r in sel], color=COLORS["E_g"], lw=1.3)
            ax.axhline(s["predicted_final_E_g"], color=COLORS["E_g"], **MARKS["prediction"])
            ax.axhline(s["E_g_unimodal_M_A"], color="0.5", **MARKS["reference"])
            ax.set_xscale("symlog", linthresh=linthresh)
            ax.set_title(f"{name} fusion, {n} training samples", fontsize=9)
            ax.set_ylim(0, 1.2)
            if i == 1:
                ax.set_xlabel(TIME_LABEL)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss / $L(0)$;  $E_g$")
    legend(fig, [
        line_handle("training loss / $L(0)$", COLORS["loss"], lw=1.3),
        line_handle("generalization error $E_g$", COLORS["E_g"], lw=1.3),
        line_handle("predicted final $E_g$ (early: min-norm; late: reduced dynamics)",
                    COLORS["E_g"], **MARKS["prediction"]),
        line_handle("$E_g$ of the unimodal solution $M_A$", "0.5", **MARKS["reference"]),
    ], loc="outside lower center", ncols=2)  # fmt: skip
    return fig
