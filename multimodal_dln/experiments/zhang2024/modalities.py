"""Beyond the papers: three and four modalities (issue 13 item 2; docs/theory.md §11).

Random scalar toy configurations (`random_modal_configs`: scales in [0.5, 3], correlations
0.6 R + 0.4 I with R a random correlation matrix, teacher weights in [0.5, 1.5]), balanced
aligned networks, one batched gradient-flow solve per structure, measured by
`measure_modalities` (times t_1..t_M and the order, measured not assumed) against
`theory.phase_times_modalities`:

- two-layer late fusion, M = 3 and M = 4, u0 = 1e-6 (leading order and order 1);
- the deep generalization, M = 3: late fusion L = 3 and intermediate fusion L = 3, L_f = 2,
  u0 = 0.01 (leading order).
"""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ... import FusionDLN, Statistics, Status, gradient_flow, measure_modalities, theory
from .._plotting import new_figure
from .._style import CATEGORY_COLORS, MARKS, NEUTRAL, legend, line_handle, mark_handle, patch_handle
from ._common import rel_stats

__all__ = [
    "plot_modalities",
    "random_modal_configs",
    "simulate_modalities",
    "summarize_modalities",
]

N_SAVE = 512
# (label, M, depth L, fusion layer L_f, u0, width); colours: _style.CATEGORY_COLORS[label]
GROUPS = (
    ("two-layer late, M = 3", 3, 2, 2, 1e-6, 4),
    ("two-layer late, M = 4", 4, 2, 2, 1e-6, 4),
    ("late L = 3, M = 3", 3, 3, 3, 1e-2, 4),
    ("intermediate L = 3, L_f = 2, M = 3", 3, 3, 2, 1e-2, 4),
)
SEPARATED = 0.05  # the order is compared where the predicted times are more than 5 % apart


def random_modal_configs(n_mod: int, count: int, seed: int) -> Statistics:
    """`count` random toy configurations of `n_mod` scalar modalities (module docstring), as a
    batch of `Statistics.toy_modalities`."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        a = rng.normal(size=(n_mod, n_mod + 2))
        c = a @ a.T
        d = np.sqrt(np.diag(c))
        corr = 0.6 * c / np.outer(d, d) + 0.4 * np.eye(n_mod)
        scales = np.sort(rng.uniform(0.5, 3.0, n_mod))[::-1]
        rows.append((scales, corr, rng.uniform(0.5, 1.5, n_mod)))
    args = [jnp.asarray(np.stack(x)) for x in zip(*rows, strict=True)]
    return jax.vmap(Statistics.toy_modalities)(*args)


def aligned_networks(stats: Statistics, depth, fusion_layer, u0, width) -> FusionDLN:
    """One balanced aligned network per member of `stats` (the theory's start)."""
    n_mod = stats.n_modalities

    def make(k, s):
        return FusionDLN.init(
            k, depth=depth, fusion_layer=fusion_layer, width=width, dims=(1,) * n_mod,
            init="aligned", init_scale=u0, align_to=s,
        )  # fmt: skip

    return eqx.filter_vmap(make)(jax.random.split(jax.random.key(0), stats.batch_shape[0]), stats)


def simulate_modalities(ctx) -> dict:
    """One solve per structure (GROUPS) over random configurations, measured and predicted."""
    count = 8 if ctx.quick else 64
    out = {"count": count, "groups": {}}
    for gi, (label, n_mod, L, Lf, u0, width) in enumerate(GROUPS):
        t0 = time.time()
        stats = random_modal_configs(n_mod, count, seed=gi)
        traj = gradient_flow(aligned_networks(stats, L, Lf, u0, width), stats, n_save=N_SAVE)
        meas = measure_modalities(traj, stats)
        th0, order0 = theory.phase_times_modalities(stats, u0, depth=L, fusion_layer=Lf)
        g = {"times": np.asarray(meas.times), "order": np.asarray(meas.order),
             "status": [Status(int(c)).name for c in np.asarray(meas.status)],
             "theory0": np.asarray(th0), "order0": np.asarray(order0)}  # fmt: skip
        if L == 2:
            th1, _ = theory.phase_times_modalities(stats, u0, order=1)
            g["theory1"] = np.asarray(th1)
        out["groups"][label] = g
        ctx.log(f"  {label}: {count} networks in {time.time() - t0:.1f} s")
    return out


def _rows_of(label, g) -> list[dict]:
    n_mod, L, Lf, u0 = next(x[1:5] for x in GROUPS if x[0] == label)
    rows = []
    for i, status in enumerate(g["status"]):
        for m in range(n_mod):
            rank = int(np.where(g["order"][i] == m)[0][0]) + 1 if status == "OK" else -1
            rows.append({
                "group": label, "M": n_mod, "depth": L, "fusion_layer": Lf, "init_scale": u0,
                "config": i, "modality": m, "learned_rank": rank, "t_sim": g["times"][i, m],
                "t_theory0": g["theory0"][i, m],
                "t_theory1": g["theory1"][i, m] if "theory1" in g else np.nan,
                "status": status, "success": status == "OK",
            })  # fmt: skip
    return rows


def _order_agreement(g) -> dict:
    ok = np.array([s == "OK" for s in g["status"]])
    th = np.sort(g["theory0"], -1)
    gaps = np.diff(th, axis=-1) / th[:, :-1]
    sep = ok & np.all(gaps > SEPARATED, axis=-1)
    same = np.all(g["order"] == g["order0"], axis=-1)
    return {
        "members": int(ok.sum()),
        "same_order": int((same & ok).sum()),
        "separated": int(sep.sum()),
        "same_order_separated": int((same & sep).sum()),
    }


def summarize_modalities(sim) -> tuple[list[dict], dict]:
    """Rows per (configuration, modality); per group the relative error of every t_m against
    the theory (leading order, and order 1 for two layers) and the order's agreement."""
    rows, summary = [], {"settings": {"configs_per_group": sim["count"], "n_save": N_SAVE}}
    for label, g in sim["groups"].items():
        rows += _rows_of(label, g)
        ok = np.array([s == "OK" for s in g["status"]])[:, None] & np.ones_like(g["times"], bool)
        s = {"t_vs_theory_leading": rel_stats(g["times"], g["theory0"], ok)}
        if "theory1" in g:
            s["t_vs_theory_order1"] = rel_stats(g["times"], g["theory1"], ok)
        s["order"] = _order_agreement(g)
        s["failed"] = [st for st in g["status"] if st != "OK"]
        summary[label] = s
    return rows, summary


def plot_modalities(rows, summary=None):
    """Left: measured t_m against the theory (order 1 for two layers, leading order for the
    deep networks), one colour per structure, y = x dotted. Right: the relative error per
    learning position (1st, 2nd, ...), jittered, with the issue's 3 % as a dotted line."""
    fig, (ax_t, ax_e) = new_figure((9.0, 3.8), ncols=2)
    rng = np.random.default_rng(0)
    handles = []
    for j, (label, _, L, *_rest) in enumerate(GROUPS):
        color = CATEGORY_COLORS[label]
        sel = [r for r in rows if r["group"] == label and r["success"]]
        if not sel:
            continue
        th = np.array([r["t_theory1"] if L == 2 else r["t_theory0"] for r in sel])
        sim = np.array([r["t_sim"] for r in sel])
        rank = np.array([r["learned_rank"] for r in sel])
        ax_t.plot(th, sim, color=color, **MARKS["simulation"])
        x = rank + 0.18 * (j - 1.5) + rng.uniform(-0.05, 0.05, rank.size)
        ax_e.plot(x, np.abs(sim / th - 1.0), color=color, **MARKS["simulation"])
        which = "order 1" if L == 2 else "leading order"
        shown = label.replace("L_f", "$L_f$").replace("M =", "$M$ =").replace("L =", "$L$ =")
        handles.append(patch_handle(f"{shown} (theory: {which})", color))
    lo = min(min(r["t_sim"] for r in rows if r["success"]), 1.0)
    hi = max(r["t_sim"] for r in rows if r["success"])
    ax_t.plot([lo, hi], [lo, hi], color=NEUTRAL, **MARKS["reference"])
    ax_t.set(xscale="log", yscale="log", xlabel="$t_m$, theory (gradient-flow time)",
             ylabel="$t_m$, network (gradient-flow time)")  # fmt: skip
    ax_e.axhline(0.03, color=NEUTRAL, **MARKS["reference"])
    ax_e.set(yscale="log", xlabel="learned $k$-th", ylabel="$|t_m / t_m^{theory} - 1|$")
    ax_e.set_xticks([1, 2, 3, 4])
    legend(ax_t, handles + [mark_handle("simulation", "network (one $t_m$)"),
                            line_handle("$y = x$", ls=":", lw=1.0)], loc="lower right")  # fmt: skip
    legend(ax_e, [line_handle("3 % (the issue's tolerance)", ls=":", lw=1.0)], loc="lower right")
    return fig
