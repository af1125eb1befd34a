"""Shared settings and helpers of the Zhang, Latham & Saxe (ICML 2024) reproductions.

- `Context`: what an entry's simulation may use (`quick`, a `log` callable).
- `CACHE`: simulations shared between entries (the toy sweep of the time-ratio and
  misattribution entries, the deep campaign of the four deep entries), keyed by settings, per
  process.
- `networks(...)`: one network per member from the one batch builder (`experiments._batch`);
  the reproductions draw member i from ``fold_in(key(seed_i), i)`` (stream = member index), so
  members sharing a seed (different statistics) get independent networks.
- `flow` / `reduced`: padded batched gradient flow (or the exact reduced dynamics) plus
  `measure`, trimmed back to the real members and returned as NumPy arrays.
- `rel_stats`: the agreement summary (median / max / p90 of |sim / ref - 1|) every entry writes.
- `entrywise_effective_scale`, `toy_settings`, `toy_runs`: the two-layer toy setting.

Times are gradient-flow times t (tau = 1); plots use the authors' epochs t / AUTHORS_LR
(docs/theory.md §1, §7).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ... import Statistics, gradient_flow, measure, reduced_flow
from ..._constants import AUTHORS_LR
from .._batch import bucket, init_networks, network_keys, pad, toy_statistics

__all__ = [
    "AUTHORS_LR",
    "CACHE",
    "Context",
    "entrywise_effective_scale",
    "flow",
    "measurements",
    "networks",
    "reduced",
    "rel_stats",
    "toy_runs",
    "toy_settings",
]

CACHE: dict = {}
"""Per-process cache of simulations shared between entries (keyed by settings)."""

_MEASURED = (
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


@dataclass
class Context:
    """What an entry's simulation may use: the size (`quick`) and a progress `log`."""

    quick: bool
    log: Callable[[str], None]


def rel_stats(sim, ref, mask=None) -> dict:
    """median / max / p90 / signed median of |sim / ref - 1| (and n) over finite members (and
    `mask`)."""
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


def networks(
    stats: Statistics, *, depth, fusion_layer, width, init, u0, seeds, activation="linear"
):
    """One network per member of `stats`: key ``fold_in(key(seed_i), i)`` (independent of
    padding; `seeds` broadcasts to the members)."""
    n = stats.sigma_xx.shape[0]
    seeds = np.broadcast_to(np.asarray(seeds), (n,))
    return init_networks(
        network_keys(seeds, np.arange(n)),
        stats,
        u0,
        depth=depth,
        fusion_layer=fusion_layer,
        width=width,
        init=init,
        activation=activation,
    )


def measurements(m) -> dict:
    """`PhaseMeasurements` -> dict of NumPy arrays."""
    return {k: np.asarray(getattr(m, k)) for k in _MEASURED}


def _t_max(t_max, n, size):
    return None if t_max is None else pad(jnp.broadcast_to(jnp.asarray(t_max, float), (n,)), size)


def flow(nets, stats_or_data, *, n, size, n_save, t_max=None, converge_rtol=1e-6, stats=None):
    """Padded batched gradient flow + measurements, trimmed back to the n real members.
    `stats` (the sample statistics of a `Dataset`) are what `measure` uses when given."""
    nets_p, obj_p = pad(nets, size), pad(stats_or_data, size)
    traj = gradient_flow(
        nets_p, obj_p, n_save=n_save, t_max=_t_max(t_max, n, size), converge_rtol=converge_rtol
    )
    s = pad(stats, size) if stats is not None else obj_p
    m = measure(traj, s)
    return traj[:n], measurements(jax.tree.map(lambda a: a[:n], m))


def reduced(stats, *, depth, fusion_layer, u0, n, size, n_save, direction="solution", t_max=None):
    """The exact reduced dynamics (docs/theory.md §3) of n members, padded to `size`."""
    s_p = pad(stats, size)
    u_p = pad(jnp.broadcast_to(jnp.asarray(u0, float), (n,)), size)
    traj = reduced_flow(
        s_p,
        depth=depth,
        fusion_layer=fusion_layer,
        init_scale=u_p,
        direction=direction,
        n_save=n_save,
        t_max=_t_max(t_max, n, size),
    )
    m = measure(traj, s_p)
    return traj[:n], measurements(jax.tree.map(lambda a: a[:n], m))


def entrywise_effective_scale(init: float, width: int) -> float:
    """Per-layer scale u0 of the balanced rank-one start that a two-layer branch with every
    entry N(0, init^2) and `width` hidden units behaves like at small init: the growing mode is
    (W2^T + W1) / sqrt(2), of squared norm ~ width init^2, so W^tot grows from ~ width init^2 / 2
    = u0^2 with u0 = init sqrt(width / 2) (width 100, init 1e-9: ln(1/u0) = 18.8; the authors'
    two-layer initialization, docs/theory.md §2). Only the log matters, to O(1) accuracy."""
    return float(init) * math.sqrt(width / 2.0)


def toy_settings(quick: bool) -> dict:
    """The two-layer toy runs: the authors' entrywise init 1e-9 (docs/theory.md §1)."""
    return {
        "width": 16 if quick else 100,
        "init": "entrywise",
        "init_scale": 1e-9,
        "batch": 128 if quick else 256,
        "n_save": 1024,
    }


def toy_runs(ctx, rho, ratio, seeds, *, u0=None, init=None, w=(1.0, 1.0), fusion_layer=2):
    """Two-layer toy runs (late fusion by default) in the shared padded batch; returns
    ``(stats, traj, measurements)``."""
    cfg = toy_settings(ctx.quick)
    u0 = cfg["init_scale"] if u0 is None else u0
    init = cfg["init"] if init is None else init
    if w == (1.0, 1.0):
        stats = toy_statistics(rho, ratio)
    else:
        stats = Statistics.toy(
            jnp.asarray(rho, float), jnp.asarray(ratio, float), w_A=w[0], w_B=w[1]
        )
    n = stats.sigma_xx.shape[0]
    nets = networks(
        stats, depth=2, fusion_layer=fusion_layer, width=cfg["width"], init=init, u0=u0, seeds=seeds
    )
    size = cfg["batch"] if n <= cfg["batch"] else bucket(n)
    if fusion_layer == 1:
        size = 8 if n <= 8 else bucket(n)
    traj, m = flow(nets, stats, n=n, size=size, n_save=cfg["n_save"])
    return stats, traj, m
