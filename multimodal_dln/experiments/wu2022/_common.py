"""Shared pieces of the Wu et al. (ICML 2022) experiments on deep linear networks.

- Reference tables: first-crossing steps t_A, t_B of vanilla and balanced training in the toy
  settings of these experiments, from an independent NumPy implementation of balanced
  multimodal learning (Wu et al. 2022; docs/theory.md §6) on population gradients. They are
  the targets the `greedy-toy` / `greedy-deep` rows are compared with (``reference_*`` columns).
- `members(rhos, Qs, alpha)`: one member per (rho, algorithm); vanilla is the balanced loop with
  alpha = inf (it never triggers), so every member shares one compiled function.
- `paired_batch(rows, ratio, seed, ...)`: toy statistics per member and the same initial
  network for every member (one seed: paired comparisons), built by the sweep engine
  (`multimodal_dln.sweeps.inputs`).
- `run_row(run, i, lr)`: member i of a `GreedyRun` as a table row (times in steps and in
  gradient-flow units t = steps x lr).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.resources
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ... import sweeps
from ..._constants import AUTHORS_LR

__all__ = [
    "ToySetting",
    "WU2022_REFERENCE_DEEP",
    "WU2022_REFERENCE_TOY",
    "finite_or_none",
    "members",
    "paired_batch",
    "run_row",
    "step_or_none",
]

def _reference_tables():
    """The reference tables shipped as data (``reference.csv`` next to this module):
    toy ``(rho, Q or None) -> (t_A, t_B)`` for two-layer late fusion (ratio 2, width 100,
    entrywise init 1e-9, lr AUTHORS_LR, alpha 0.01, no warm-up, 40 000 steps) and deep
    ``(rho, L_f, Q or None) -> (t_A, t_B)`` for depth 4 (the authors' deep Gaussian init,
    u0 = 0.1, 15 000 steps), all in steps."""
    text = importlib.resources.files(__package__).joinpath("reference.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    toy, deep = {}, {}
    for r in rows:
        q = int(r["Q"]) if r["Q"] else None
        times = (int(r["t_A_steps"]), int(r["t_B_steps"]))
        if r["setting"] == "toy":
            toy[(float(r["rho"]), q)] = times
        else:
            deep[(float(r["rho"]), int(r["fusion_layer"]), q)] = times
    return toy, deep


WU2022_REFERENCE_TOY, WU2022_REFERENCE_DEEP = _reference_tables()


def members(rhos, Qs, alpha) -> list[dict]:
    """One row per (rho, algorithm): vanilla, then balanced with each Q."""
    rows = []
    for rho in rhos:
        rows.append({"rho": float(rho), "algorithm": "vanilla", "Q": None, "alpha": None})
        for q in Qs:
            rows.append(
                {"rho": float(rho), "algorithm": "balanced", "Q": int(q), "alpha": float(alpha)}
            )
    return rows


def paired_batch(rows, ratio, seed, *, depth, fusion_layer, width, init_scale, init):
    """``(stats, nets, alpha, Q)``: toy statistics per member, the same network for every member
    (every member has seed `seed`: paired comparisons), and the balancing parameters. Built by
    the sweep engine once per distinct rho (`sweeps.inputs`), then gathered per row."""
    rhos = sorted({r["rho"] for r in rows})
    sweep = sweeps.product(rho=rhos) * sweeps.product(
        ratio=ratio, depth=depth, fusion_layer=fusion_layer, width=width,
        init_scale=init_scale, init=init, seed=seed,
    )  # fmt: skip
    [g] = sweeps.inputs(sweep)
    idx = np.asarray([rhos.index(r["rho"]) for r in rows])
    stats, nets = jax.tree.map(lambda a: a[idx] if eqx.is_array(a) else a, (g.stats, g.nets))
    alpha = jnp.asarray([math.inf if r["alpha"] is None else r["alpha"] for r in rows])
    Q = jnp.asarray([r["Q"] or 1 for r in rows])
    return stats, nets, alpha, Q


def finite_or_none(x):
    """A float, or None when it is not finite (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def step_or_none(x):
    """A step count, or None for the trainer's 'never' (-1)."""
    x = int(x)
    return x if x >= 0 else None


def run_row(run, i, lr) -> dict:
    """Member i of a `GreedyRun`: first-crossing steps and times, lag, phase counts, finals."""
    tA, tB = step_or_none(run.t_A_step[i]), step_or_none(run.t_B_step[i])
    counts = np.asarray(run.mode_counts[i])
    return {
        "t_A_steps": tA,
        "t_B_steps": tB,
        "t_A": None if tA is None else tA * lr,
        "t_B": None if tB is None else tB * lr,
        "lag_steps": None if tA is None or tB is None else tB - tA,
        "time_ratio": None if tA is None or tB is None else tB / tA,
        "unimodal_steps": step_or_none(run.n_unimodal[i]),
        "inverted_steps": step_or_none(run.n_inverted[i]),
        "rebalance_steps": int(counts[1] + counts[2]),
        "final_d_util": finite_or_none(run.d_util[i, -1]),
        "final_d_speed": finite_or_none(run.d_speed[i, -1]),
        "final_loss": finite_or_none(run.loss[i, -1]),
        "final_E_g": finite_or_none(run.gen_error[i, -1]),
        "final_R2": finite_or_none(run.perf[i, -1]),
    }


@dataclasses.dataclass(frozen=True)
class ToySetting:
    """The toy configuration of `greedy-toy` and `greedy-ode`: two-layer late fusion (width
    100, entrywise init std 1e-9) on toy statistics of ratio 2, vanilla and balanced (alpha,
    each Q) for every rho, lr `AUTHORS_LR`, every member from one network seed."""

    rhos: tuple = (0.5, 0.0, -0.5)
    ratio: float = 2.0
    Qs: tuple = (1, 5)
    alpha: float = 0.01
    lr: float = AUTHORS_LR
    width: int = 100
    init_scale: float = 1e-9
    seed: int = 0

    def batch(self):
        """``(rows, stats, nets, alpha, Q)``: `members` and their `paired_batch`."""
        rows = members(self.rhos, self.Qs, self.alpha)
        net = dict(depth=2, fusion_layer=2, width=self.width, init_scale=self.init_scale)
        stats, nets, a, q = paired_batch(rows, self.ratio, self.seed, init="entrywise", **net)
        return rows, stats, nets, a, q

    @property
    def is_reference(self) -> bool:
        """Whether the reference tables' settings hold (ratio, lr, width, init scale)."""
        return (self.ratio, self.lr, self.width, self.init_scale) == (2.0, AUTHORS_LR, 100, 1e-9)
