"""Toy-data members simulated as one batched solve: `simulate_toy` and its rows.

A member is a point of the toy grid (fusion layer L_f, correlation rho, ratio
r = sigma_A / sigma_B, init scale u0; Zhang et al. 2024, toy data; docs/theory.md §1) and a
seed. Members sharing L_f are solved together: batched toy statistics and networks from the
experiments' batch builder (`_batch.toy_batch`: a member's network depends on its seed only),
one `gradient_flow` or `gradient_descent` call, one `measure`. Each member becomes a row: its
configuration, phase times, time ratio, misattribution and their theory
(`theory.time_ratio_toy_network`), and its `Status` (docs/theory.md §7); the phase columns of a
member that is not OK are NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _training, theory
from .._constants import AUTHORS_LR
from .._gradient_descent import gradient_descent, stable_lr_estimate
from .._gradient_flow import gradient_flow
from .._measurements import PhaseMeasurements, measure
from .._statistics import Statistics
from .._status import Status, describe
from .._trajectory import Trajectory
from ._batch import pad_list, toy_batch
from .settings import GRID_KEYS, normalize_seeds, unique, validate_grid, validate_settings

__all__ = [
    "GD_RERUN_FACTORS",
    "DivergenceWarning",
    "MemberConfig",
    "PHASE_COLUMNS",
    "SimulationResult",
    "gd_n_steps",
    "horizons",
    "simulate_toy",
    "warn_diverged",
]

PHASE_COLUMNS = ("t_A", "t_B", "time_ratio", "misattribution", "plateau_loss", "rel_error")
"""Row columns that are NaN (an empty cell in results.csv) for every member not OK."""

GD_RERUN_FACTORS = (8, 64)
"""Default GD budget: members not converged are run again with these multiples of it."""


@dataclass(frozen=True)
class MemberConfig:
    """One member: a grid point and a seed."""

    fusion_layer: int
    rho: float
    ratio: float
    init_scale: float
    seed: int

    @property
    def key(self) -> tuple:
        return (self.fusion_layer, self.rho, self.ratio, self.init_scale, self.seed)


@dataclass
class SimulationResult:
    """What `simulate_toy` returns: rows (one dict per member, CSV columns plus `noise`), and the
    batched trajectory, measurements and statistics *including* padding members (the first
    `len(rows)` entries are the real ones)."""

    rows: list[dict]
    trajectory: Trajectory
    measurements: PhaseMeasurements
    stats: Statistics
    configs: list[MemberConfig]


class DivergenceWarning(RuntimeWarning):
    """Gradient descent diverged for some members (their status is DIVERGED, phase times NaN)."""


def build(configs: Sequence[MemberConfig], *, depth, width, init, noise):
    """`(nets, stats)` of the members (all with the first member's fusion layer)."""
    return toy_batch(
        [c.seed for c in configs],
        [float(c.rho) for c in configs],
        [float(c.ratio) for c in configs],
        [float(c.init_scale) for c in configs],
        depth=depth,
        fusion_layer=configs[0].fusion_layer,
        width=width,
        init=init,
        noise=noise,
    )


def gd_n_steps(horizons, lr: float) -> int:
    """GD step budget from gradient-flow horizons: rounded up to a power of two (at most 2^20)
    so that small changes of the grid do not change the shapes (no recompile)."""
    need = max(1.0, float(np.max(np.asarray(horizons))) / float(lr))
    return int(2 ** min(20, math.ceil(math.log2(need))))


def horizons(configs, *, depth, width, init, noise) -> np.ndarray:
    """The estimated gradient-flow horizon of each member (docs/theory.md §7)."""
    nets, stats = build(configs, depth=depth, width=width, init=init, noise=noise)
    return np.asarray(eqx.filter_vmap(_training.default_horizon)(nets, stats))


def _check_members(configs, checked) -> None:
    validate_grid(
        {k: unique([getattr(c, k) for c in configs]) for k in GRID_KEYS}, checked["depth"]
    )
    normalize_seeds([c.seed for c in configs])
    if len({c.fusion_layer for c in configs}) != 1:
        raise ValueError(
            "all members of one solve must share the fusion layer (the network structure)."
        )


def simulate_toy(
    configs: Sequence[MemberConfig],
    *,
    depth: int,
    width: int,
    init: str = "random",
    method: str = "flow",
    lr: float | None = AUTHORS_LR,
    noise: float = 0.0,
    pad_to: int | None = None,
    n_steps: int | None = None,
    n_save: int = 512,
    t_max: float | None = None,
    on_divergence: str = "warn",
    gd_budget: int | None = None,
) -> SimulationResult:
    """Simulate toy members (all with the same fusion layer) as ONE batched solve.

    `pad_to` pads the batch to a fixed size (repeating the last member) so that calls with fewer
    members reuse the compiled solver. Times are in gradient-flow units (GD: steps x lr).

    - `t_max`: horizon in gradient-flow time, kept as given: members not converged by then
      get status NOT_CONVERGED. For GD it sets `n_steps = ceil(t_max / lr)`. Default: the
      estimated horizon, continued for members that have not converged (flow: up to 64x the
      estimate; GD: the budget below, then 8x and 64x it).
    - `n_steps`: GD step budget, kept as given (give `n_steps` or `t_max`, not both). Default:
      `gd_budget` if given, else the largest gradient-flow horizon of the batch / lr, rounded
      up to a power of two.
    - `on_divergence`: "warn" (one `DivergenceWarning` naming the diverged real members, never
      the padding) or "ignore". Divergence is always in the rows' `status`.

    Every row carries `status` (a `Status` name), `reason` (`describe`), `t_end` and
    `num_steps`; the phase columns (`PHASE_COLUMNS`) of a member whose status is not OK are NaN.
    """
    configs = list(configs)
    if not configs:
        raise ValueError("simulate_toy needs at least one member.")
    checked = validate_settings(
        depth=depth, width=width, init=init, method=method, lr=lr, noise=noise, t_max=t_max
    )
    lr, t_max = checked["lr"], checked["t_max"]
    if on_divergence not in ("warn", "ignore"):
        raise ValueError(f"on_divergence must be 'warn' or 'ignore'; got {on_divergence!r}.")
    _check_members(configs, checked)
    n_real = len(configs)
    padded = pad_list(configs, pad_to)
    nets, stats = build(padded, depth=depth, width=width, init=init, noise=noise)
    if method == "flow":
        traj = gradient_flow(nets, stats, n_save=n_save, t_max=t_max)
    else:
        traj = _solve_gd(
            nets, stats, lr, n_steps=n_steps, t_max=t_max, n_save=n_save, budget=gd_budget
        )
    meas = measure(traj, stats)
    rows = _rows(
        configs[:n_real], traj, meas, depth=depth, width=width, init=init, method=method, lr=lr
    )
    for r in rows:
        r["noise"] = float(noise)
    if on_divergence == "warn":
        real = jax.tree.map(lambda a: a[:n_real], (nets, stats))
        warn_diverged(rows, list(range(n_real)), lr, real)
    return SimulationResult(rows, traj, meas, stats, padded)


def _solve_gd(nets, stats, lr, *, n_steps, t_max, n_save, budget) -> Trajectory:
    """Gradient descent for a padded batch. An explicit `n_steps` (or `t_max` / lr) is kept as
    given; otherwise start from `budget` (default: from the batch's horizons) and run the
    whole batch again with `GD_RERUN_FACTORS` x the budget while members have not converged,
    keeping each member's first converged run (so a member's result does not depend on the
    others in its batch, and the shapes, hence the compiled solver, stay the same)."""
    if t_max is not None:
        if n_steps is not None:
            raise ValueError("give n_steps or t_max for gradient descent, not both.")
        n_steps = max(1, math.ceil(t_max / lr))
    run = lambda k: gradient_descent(  # noqa: E731
        nets, stats, lr=lr, n_steps=k, n_save=n_save, on_divergence="ignore"
    )
    if n_steps is not None:
        return run(n_steps)
    if budget is None:
        budget = gd_n_steps(np.asarray(eqx.filter_vmap(_training.default_horizon)(nets, stats)), lr)
    traj = run(budget)
    for factor in GD_RERUN_FACTORS:
        todo = np.asarray(traj.status) == Status.NOT_CONVERGED
        if not todo.any():
            break
        traj = _select(todo, run(budget * factor), traj)
    return traj


def _select(mask, new, old):
    """Members where `mask` holds from `new`, the others from `old` (same batch and shapes)."""
    a_new, static = eqx.partition(new, eqx.is_array)
    a_old = eqx.filter(old, eqx.is_array)
    m = jnp.asarray(mask)
    pick = lambda x, y: jnp.where(m.reshape(m.shape + (1,) * (x.ndim - 1)), x, y)  # noqa: E731
    return eqx.combine(jax.tree.map(pick, a_new, a_old), static)


def warn_diverged(rows, indices, lr, real=None, where="member") -> None:
    """One `DivergenceWarning` for the DIVERGED rows among `rows`; `indices` are the rows'
    positions to report (in this call, or in the sweep); `real` = (nets, stats) of the real
    members, to estimate the stable learning rate in the message."""
    bad = [(i, r) for i, r in zip(indices, rows, strict=True) if r["status"] == "DIVERGED"]
    if not bad:
        return
    limit = ""
    if real is not None:
        est = np.asarray(stable_lr_estimate(*real))
        limit = f", estimated here as lr < {float(np.nanmin(est)):.3g}"
    shown = "; ".join(
        f"#{i} (L_f={r['fusion_layer']}, rho={r['rho']:g}, ratio={r['ratio']:g}, "
        f"u0={r['init_scale']:g}, seed {r['seed']})"
        for i, r in bad[:5]
    )
    more = f"; ... ({len(bad) - 5} more)" if len(bad) > 5 else ""
    warnings.warn(
        f"gradient descent diverged for {len(bad)} of {len(rows)} {where}(s): {shown}{more}, "
        f"with lr = {lr:g}; lower lr below the stability limit "
        f"(multimodal_dln.stable_lr_estimate{limit}). Their status is DIVERGED and their phase "
        "columns are empty.",
        DivergenceWarning,
        stacklevel=3,
    )


def _rows(configs, traj: Trajectory, meas: PhaseMeasurements, *, depth, width, init, method, lr):
    """One row per real member (the first `len(configs)` of the batch)."""
    n_real = len(configs)
    get = lambda a: np.asarray(a)[:n_real]  # noqa: E731
    codes = get(meas.status)
    ok = codes == Status.OK
    nan_unless_ok = lambda a: np.where(ok, get(a), np.nan)  # noqa: E731
    t_A, t_B, tr = nan_unless_ok(meas.t_A), nan_unless_ok(meas.t_B), nan_unless_ok(meas.time_ratio)
    mis = np.where(ok, np.asarray(meas.misattribution)[:n_real].reshape(n_real, -1)[:, 0], np.nan)
    plateau, final = nan_unless_ok(meas.plateau_loss), get(meas.final_loss)
    t_end, num_steps = get(traj.t_end), get(traj.num_steps)
    rows = []
    for i, c in enumerate(configs):
        th = theory.time_ratio_toy_network(depth, c.fusion_layer, c.rho, c.ratio, c.init_scale)
        ratio_i = float(tr[i])
        rel = ratio_i / th - 1.0 if math.isfinite(th) and math.isfinite(ratio_i) else math.nan
        rows.append(
            {
                "fusion_layer": c.fusion_layer,
                "depth": depth,
                "width": width,
                "init": init,
                "method": method,
                "lr": float(lr) if method == "gd" else math.nan,
                "rho": c.rho,
                "ratio": c.ratio,
                "init_scale": c.init_scale,
                "seed": c.seed,
                "t_A": float(t_A[i]),
                "t_B": float(t_B[i]),
                "time_ratio": ratio_i,
                "misattribution": float(mis[i]),
                "plateau_loss": float(plateau[i]),
                "final_loss": float(final[i]),
                "success": bool(ok[i]),
                "status": Status(int(codes[i])).name,
                "reason": describe(int(codes[i]), method),
                "t_end": float(t_end[i]),
                "num_steps": int(num_steps[i]),
                "theory_time_ratio": th,
                "rel_error": rel,
            }
        )
    return rows
