"""Shared settings and helpers of the Zhang, Latham & Saxe (ICML 2024) reproductions.

- `Context`: what an entry's simulation may use (`quick`, a `log` callable).
- `CACHE`: simulations shared between entries (the toy sweep of the time-ratio and
  misattribution entries, the deep campaign of the four deep entries), keyed by settings, per
  process.
- The sweep engine (`multimodal_dln.sweeps`, docs/sweeps.md) is the one batch builder and seed
  policy: entries that need only per-member measurements declare a `Sweep` and call
  `sweeps.run`, read back in the declared order by `measured`; entries that need trajectories
  build their inputs with `built` (`sweeps.inputs`) and integrate with `flow` / `reduced`.
  Independent draws come from distinct ``seed`` values (e.g. the member index), never from
  the member's position in a batch.
- `flow` / `reduced`: batched gradient flow (or the exact reduced dynamics, docs/theory.md §3)
  plus `measure`, returned as NumPy arrays.
- `rel_stats`: the agreement summary (median / max / p90 of |sim / ref - 1|) every entry writes.
- `entrywise_effective_scale`, `toy_settings`, `toy_runs`: the two-layer toy setting.

Times are gradient-flow times t (tau = 1). Rows and summaries give some times as the
authors' epochs t / AUTHORS_LR (``epoch``, ``*_epochs``); the figures draw every time axis in
t (`experiments._style.TIME_LABEL`; docs/theory.md §1, §7).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ... import gradient_flow, measure, reduced_flow, sweeps
from ..._constants import AUTHORS_LR

__all__ = [
    "AUTHORS_LR",
    "CACHE",
    "Context",
    "built",
    "concat",
    "entrywise_effective_scale",
    "failed_counts",
    "flow",
    "measured",
    "measurements",
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
    "status",
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


def failed_counts(rows, label: Callable[[dict], str]) -> dict:
    """Members without a phase time (rows whose `success` is false; rows without one, e.g.
    theory curves, are not members), counted by `label(row)` (e.g. kind and status)."""
    return dict(collections.Counter(label(r) for r in rows if "success" in r and not r["success"]))


def built(sweep: sweeps.Sweep) -> sweeps.Inputs:
    """The inputs of a sweep of one static structure (`sweeps.inputs`), every member kept (the
    caller gives each member its own seed, so none repeats)."""
    groups = sweeps.inputs(sweep)
    if len(groups) != 1 or len(groups[0].members) != len(sweep):
        raise ValueError(f"expected one structure and no repeated members; got {sweep!r}.")
    return groups[0]


def concat(trees):
    """Batches joined along the leading axis (non-array leaves from the first tree)."""
    return jax.tree.map(lambda *a: jnp.concatenate(a) if eqx.is_array(a[0]) else a[0], *trees)


_RUN_COLUMNS = ("t_A", "t_B", "time_ratio", "misattribution", "plateau_loss", "final_loss",
                "success", "status", "theory_time_ratio")  # fmt: skip


def measured(sweep: sweeps.Sweep, df) -> dict:
    """The results table `df` of `sweeps.run(sweep)` as NumPy arrays in the declared order of
    `sweep` (one entry per declared member, repeats included)."""
    key = lambda m: tuple(None if pd.isna(m[n]) else m[n] for n in sweeps.AXIS_NAMES)  # noqa: E731
    where = {key(r): i for i, r in enumerate(df.to_dict("records"))}
    rows = [where[key(sweeps.Sweep([g], sweep.objective).members()[0])] for g in sweep.given]
    return {c: df[c].to_numpy()[rows] for c in _RUN_COLUMNS}


def measurements(m) -> dict:
    """`PhaseMeasurements` -> dict of NumPy arrays."""
    return {k: np.asarray(getattr(m, k)) for k in _MEASURED}


def flow(
    nets, stats_or_data, *, n_save, t_max=None, converge_rtol=1e-6, stats=None, chunk_steps=None
):
    """Batched gradient flow + measurements. `stats` (the sample statistics of a `Dataset`)
    are what `measure` uses when given; `chunk_steps` solves compacted (`gradient_flow`: the
    same steps and saves, finished members dropped between chunks)."""
    t_max = None if t_max is None else jnp.asarray(t_max, float)
    traj = gradient_flow(
        nets, stats_or_data, n_save=n_save, t_max=t_max, converge_rtol=converge_rtol,
        chunk_steps=chunk_steps,
    )  # fmt: skip
    return traj, measurements(measure(traj, stats_or_data if stats is None else stats))


def reduced(stats, *, depth, fusion_layer, u0, n_save, direction="solution"):
    """The exact reduced dynamics (docs/theory.md §3) of a batch of statistics."""
    n = stats.sigma_xx.shape[0]
    traj = reduced_flow(
        stats,
        depth=depth,
        fusion_layer=fusion_layer,
        init_scale=jnp.broadcast_to(jnp.asarray(u0, float), (n,)),
        direction=direction,
        n_save=n_save,
    )
    return traj, measurements(measure(traj, stats))


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
        "n_save": 1024,
    }


def toy_runs(ctx, rho, ratio, seeds, *, u0=None, init=None, w=(1.0, 1.0), fusion_layer=2):
    """Two-layer toy runs (late fusion by default), member i with network seed `seeds[i]`,
    built by the sweep engine; returns ``(stats, traj, measurements)``."""
    cfg = toy_settings(ctx.quick)
    n = len(rho)
    u0 = cfg["init_scale"] if u0 is None else u0
    g = built(
        sweeps.zipped(
            rho=rho,
            ratio=ratio,
            seed=seeds,
            init_scale=np.broadcast_to(np.asarray(u0, float), (n,)),
            w_A=[w[0]] * n,
            w_B=[w[1]] * n,
        )
        * sweeps.product(
            depth=2,
            fusion_layer=fusion_layer,
            width=cfg["width"],
            init=cfg["init"] if init is None else init,
            n_save=cfg["n_save"],
        )
    )
    traj, m = flow(g.nets, g.objective, n_save=cfg["n_save"])
    return g.stats, traj, m
