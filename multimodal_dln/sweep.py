"""Parameter sweeps on the toy data, chunked, batched, resumable, written row by row.

A sweep is the cartesian product of a grid (fusion layer L_f, correlation rho, variance ratio
r = sigma_A / sigma_B, initialization scale u0) with a set of seeds. Members are grouped by
fusion layer (the network structure is static, so one compiled solver per L_f) and, within a
group, cut into chunks of a fixed size; the last chunk is padded by repeating its last member so
every solve has the same shapes and nothing is recompiled. Each chunk is one batched
`gradient_flow` (or `gradient_descent`) call on batched toy statistics and batched networks.

Reproducibility: a member's network is drawn from a key that depends on its seed only
(`jax.random.fold_in(jax.random.key(seed), NET_STREAM)`), never on its position in a chunk,
and the batched solvers treat members independently, so a result does not depend on the chunk
size or on which other members share its chunk (checked bit for bit in the tests).

Robustness: after every chunk its rows are appended to ``results.csv`` and flushed to disk
(``fsync``), so an interrupted sweep loses at most the chunk in progress; ``resume=True`` skips
every member already in the file. ``config.json`` records the settings; resuming with other
settings is refused.

Trust: every row carries the member's `Status` name and reason (``status``, ``reason``), its
``t_end`` and ``num_steps``; the phase columns of a member that is not OK are empty (NaN), and
summaries and figures use successful members only.
"""

from __future__ import annotations

import csv
import datetime as _dt
import itertools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _training
from . import theory as _theory
from ._gradient_descent import gradient_descent, stable_lr_estimate
from ._gradient_flow import gradient_flow
from ._measurements import PhaseMeasurements, measure
from ._network import INIT_SCHEMES, FusionDLN
from ._statistics import Statistics
from ._status import Status, describe
from ._trajectory import Trajectory

__all__ = [
    "CSV_COLUMNS",
    "DivergenceWarning",
    "GRID_KEYS",
    "KEY_COLUMNS",
    "METHODS",
    "PHASE_COLUMNS",
    "MemberConfig",
    "SimulationResult",
    "SweepResult",
    "read_results",
    "run_sweep",
    "simulate_toy",
    "summarize",
    "failure_line",
    "failures",
    "format_error_table",
    "theory_misattribution",
    "theory_time_ratio",
]

GRID_KEYS = ("fusion_layer", "rho", "ratio", "init_scale")
KEY_COLUMNS = ("fusion_layer", "rho", "ratio", "init_scale", "seed")
CSV_COLUMNS = (
    "fusion_layer",
    "depth",
    "width",
    "init",
    "method",
    "lr",
    "rho",
    "ratio",
    "init_scale",
    "seed",
    "t_A",
    "t_B",
    "time_ratio",
    "misattribution",
    "plateau_loss",
    "final_loss",
    "success",
    "status",
    "reason",
    "t_end",
    "num_steps",
    "theory_time_ratio",
    "rel_error",
)
# The column set written before per-member status codes (no status, reason, t_end, num_steps):
# its failed rows may hold plausible-looking phase times, so such a file is not read.
LEGACY_CSV_COLUMNS = tuple(
    c for c in CSV_COLUMNS if c not in ("status", "reason", "t_end", "num_steps")
)
# Columns that are NaN (an empty cell in results.csv) for every member whose status is not OK.
PHASE_COLUMNS = ("t_A", "t_B", "time_ratio", "misattribution", "plateau_loss", "rel_error")
METHODS = ("flow", "gd")
NET_STREAM = 0  # fold_in index of the network-initialization stream of a seed
_INT_COLUMNS = ("fusion_layer", "depth", "width", "seed", "num_steps")
_STR_COLUMNS = ("init", "method", "status", "reason")
_BOOL_COLUMNS = ("success",)
# Settings that change results: resuming with different values is refused.
_SETTING_KEYS = ("depth", "width", "init", "method", "lr", "noise", "n_save", "t_max")


# ------------------------------------------------------------------------------------------------
# Theory available for the toy data
# ------------------------------------------------------------------------------------------------
def theory_time_ratio(depth, fusion_layer, rho, ratio, init_scale=None):
    """Leading-order t_B / t_A on the toy data, NaN where no theory applies.

    - depth 1: NaN (a one-layer network converges linearly: no saddle, no unimodal phase);
    - ratio r < 1: NaN (B is learned first; the formulas and `measure` assume A first);
    - L_f = 1 (early fusion, L >= 2): exactly 1 (no unimodal phase, digest 2.3);
    - L_f = L (late fusion, L >= 2): 1 + (r^2 - 1) / (1 - rho^2) (`theory.time_ratio_toy`);
    - 1 < L_f < L (intermediate fusion): the leading-order deep formula
      `theory.time_ratio_deep_toy(L, L_f, rho, r, u0)` (digest 2.6; valid as u0 -> 0, so NaN
      without `init_scale`). At u0 = 0.1, aligned networks differ from it by ~3.5-6.6 % and
      random init comes out ~18 % below it.

    `time_ratio_deep_toy` itself gives the same values for L_f = L (the closed form) and
    L_f = 1 (exactly 1). Vectorized over NumPy arrays (broadcasting; depth and fusion_layer
    may vary too); returns a float or an array.
    """
    u0 = np.nan if init_scale is None else init_scale
    depth, fusion_layer, rho, ratio, u0 = np.broadcast_arrays(
        np.asarray(depth, float),
        np.asarray(fusion_layer, float),
        np.asarray(rho, float),
        np.asarray(ratio, float),
        np.asarray(u0, float),
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        late = np.asarray(_theory.time_ratio_toy(rho, ratio), dtype=float)
    valid = (depth >= 2) & (ratio >= 1.0) & (np.abs(rho) < 1.0)
    out = np.full(rho.shape, np.nan)
    out = np.where(valid & (fusion_layer == depth), late, out)
    out = np.where(valid & (fusion_layer == 1), 1.0, out)
    mid = valid & (fusion_layer > 1) & (fusion_layer < depth) & (u0 > 0) & np.isfinite(u0)
    if np.any(mid):
        out = out.copy()
        _fill_intermediate(out, mid, depth, fusion_layer, rho, ratio, u0)
    return float(out) if out.ndim == 0 else out


def _fill_intermediate(out, mask, depth, fusion_layer, rho, ratio, u0) -> None:
    """`theory.time_ratio_deep_toy` into `out[mask]`, one call per (L, L_f) pair (they are
    static arguments there)."""
    for L, Lf in {(int(a), int(b)) for a, b in zip(depth[mask], fusion_layer[mask], strict=True)}:
        sel = mask & (depth == L) & (fusion_layer == Lf)
        out[sel] = np.asarray(
            _theory.time_ratio_deep_toy(L, Lf, rho[sel], ratio[sel], u0[sel]), dtype=float
        )


def theory_misattribution(depth, fusion_layer, rho, ratio, init_scale=None):
    """W_A^tot(t_uni) - W_A^tot(inf) = rho / r on the toy data (digest 2.4), where a unimodal
    phase is predicted (L_f >= 2 and r > 1); NaN otherwise (early fusion, or r <= 1).
    `init_scale` is accepted for symmetry with `theory_time_ratio` (unused)."""
    del init_scale
    depth, fusion_layer, rho, ratio = np.broadcast_arrays(
        np.asarray(depth),
        np.asarray(fusion_layer),
        np.asarray(rho, float),
        np.asarray(ratio, float),
    )
    mis = np.asarray(_theory.misattribution_toy(rho, ratio), dtype=float)
    out = np.where((fusion_layer >= 2) & (ratio > 1.0), mis, np.nan)
    return float(out) if out.ndim == 0 else out


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------
def _n(param: str, names: Mapping[str, str] | None) -> str:
    return (names or {}).get(param, param)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _as_float(param, v, names) -> float:
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{_n(param, names)} must be a number; got {v!r}.")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{_n(param, names)} must be a number; got {v!r}.") from None
    if not math.isfinite(x):
        raise ValueError(f"{_n(param, names)} must be finite; got {v!r}.")
    return x


def validate_settings(
    *,
    depth,
    width,
    init="random",
    method="flow",
    lr=0.04,
    noise=0.0,
    t_max=None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check the structural / training settings; return them normalized (lr None for flow;
    t_max None for the automatic horizon, else a float > 0).

    Raises `ValueError` naming the parameter (as given in `names`, e.g. CLI flags) and its range.
    """
    if not _is_int(depth) or depth < 1:
        raise ValueError(f"{_n('depth', names)} must be an integer >= 1; got {depth!r}.")
    if not _is_int(width) or width < 1:
        raise ValueError(f"{_n('width', names)} must be an integer >= 1; got {width!r}.")
    if init not in INIT_SCHEMES:
        raise ValueError(
            f"{_n('init', names)} must be one of {', '.join(INIT_SCHEMES)}; got {init!r}."
        )
    if method not in METHODS:
        raise ValueError(
            f"{_n('method', names)} must be one of {', '.join(METHODS)}; got {method!r}."
        )
    noise = _as_float("noise", noise, names)
    if noise < 0:
        raise ValueError(f"{_n('noise', names)} must be >= 0; got {noise!r}.")
    if method == "gd":
        lr = _as_float("lr", lr, names)
        if lr <= 0:
            raise ValueError(f"{_n('lr', names)} (learning rate) must be > 0; got {lr!r}.")
    else:
        lr = None
    if t_max is not None:
        t_max = _as_float("t_max", t_max, names)
        if t_max <= 0:
            raise ValueError(
                f"{_n('t_max', names)} (horizon, gradient-flow time) must be > 0; got {t_max!r}."
            )
    return {
        "depth": int(depth),
        "width": int(width),
        "init": init,
        "method": method,
        "lr": lr,
        "noise": noise,
        "t_max": t_max,
    }


def _as_list(v) -> list:
    if isinstance(v, (str, bytes)):
        return [v]
    if isinstance(v, np.ndarray):
        return v.ravel().tolist()
    if isinstance(v, Iterable):
        return list(v)
    return [v]


def _unique(values: list) -> list:
    seen, out = set(), []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def validate_grid(
    grid: Mapping[str, Any], depth: int, names: Mapping[str, str] | None = None
) -> dict[str, list]:
    """Check a sweep grid {fusion_layer, rho, ratio, init_scale: value or list of values}.

    Returns the grid with every entry a non-empty list of Python numbers (duplicates removed).
    """
    if not isinstance(grid, Mapping):
        raise ValueError(
            f"grid must be a dict with keys {', '.join(GRID_KEYS)}; got {type(grid).__name__}."
        )
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ValueError(
            f"grid has unknown key(s) {unknown}; allowed keys: {', '.join(GRID_KEYS)}."
        )
    missing = [k for k in GRID_KEYS if k not in grid]
    if missing:
        raise ValueError(f"grid is missing key(s) {missing}; it needs {', '.join(GRID_KEYS)}.")
    out: dict[str, list] = {}
    for key in GRID_KEYS:
        values = _as_list(grid[key])
        if not values:
            raise ValueError(f"{_n(key, names)} needs at least one value.")
        clean = []
        for v in values:
            if key == "fusion_layer":
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                if not _is_int(v) or not 1 <= v <= depth:
                    raise ValueError(
                        f"{_n(key, names)} (L_f) must be an integer in [1, depth] = [1, {depth}]; got {v!r}."
                    )
                clean.append(int(v))
                continue
            x = _as_float(key, v, names)
            if key == "rho" and not -1.0 < x < 1.0:
                raise ValueError(
                    f"{_n(key, names)} (correlation) must lie in the open interval (-1, 1); got {v!r}."
                )
            if key == "ratio" and not x > 0:
                raise ValueError(f"{_n(key, names)} (sigma_A / sigma_B) must be > 0; got {v!r}.")
            if key == "init_scale" and not x > 0:
                raise ValueError(f"{_n(key, names)} (u0) must be > 0; got {v!r}.")
            clean.append(x)
        out[key] = _unique(clean)
    return out


def normalize_seeds(seeds, names: Mapping[str, str] | None = None) -> list[int]:
    """`seeds` = N (an int >= 1: seeds 0..N-1) or a non-empty sequence of distinct ints >= 0."""
    if _is_int(seeds):
        if not 1 <= seeds <= 2**32:
            raise ValueError(
                f"{_n('seeds', names)} (number of seeds) must be an integer >= 1; got {seeds!r}."
            )
        return list(range(int(seeds)))
    values = _as_list(seeds)
    if not values or not all(_is_int(s) and 0 <= s < 2**32 for s in values):
        raise ValueError(
            f"{_n('seeds', names)} must be an integer >= 1 (the number of seeds) or a non-empty list of "
            f"integers in [0, 2^32); got {seeds!r}."
        )
    return _unique([int(s) for s in values])


def _check_chunk_size(chunk_size) -> int:
    if not _is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1; got {chunk_size!r}.")
    return int(chunk_size)


# ------------------------------------------------------------------------------------------------
# Batched simulation of toy members
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberConfig:
    """One sweep member: a grid point and a seed."""

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


def member_key(seed: int) -> jax.Array:
    """The network-initialization key of a seed: independent of chunking and grid position."""
    return jax.random.fold_in(jax.random.key(int(seed)), NET_STREAM)


def _init_fn(depth, fusion_layer, width, init):
    def one(key, u0, stats):
        return FusionDLN.init(
            key,
            depth=depth,
            fusion_layer=fusion_layer,
            width=width,
            d_A=1,
            d_B=1,
            d_out=1,
            init_scale=u0,
            init=init,
            align_to=stats if init == "aligned" else None,
        )

    return one


@eqx.filter_jit
def _build_batch(seeds, rhos, ratios, noises, u0s, depth, fusion_layer, width, init):
    stats = jax.vmap(Statistics.toy)(rhos, ratios, noises)
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), NET_STREAM))(seeds)
    nets = eqx.filter_vmap(_init_fn(depth, fusion_layer, width, init))(keys, u0s, stats)
    return nets, stats


def _pad(configs: list[MemberConfig], pad_to: int | None) -> list[MemberConfig]:
    if pad_to is None or len(configs) >= pad_to:
        return list(configs)
    return list(configs) + [configs[-1]] * (pad_to - len(configs))


def _build(configs, *, depth, width, init, noise):
    seeds = jnp.asarray([c.seed for c in configs], dtype=jnp.uint32)
    f = lambda name: jnp.asarray([float(getattr(c, name)) for c in configs], dtype=float)  # noqa: E731
    noises = jnp.full((len(configs),), float(noise))
    return _build_batch(
        seeds,
        f("rho"),
        f("ratio"),
        noises,
        f("init_scale"),
        depth,
        configs[0].fusion_layer,
        width,
        init,
    )


def gd_n_steps(horizons, lr: float) -> int:
    """GD step budget from gradient-flow horizons: rounded up to a power of two (at most 2^20)
    so that small changes of the grid do not change the shapes (no recompile)."""
    need = max(1.0, float(np.max(np.asarray(horizons))) / float(lr))
    return int(2 ** min(20, math.ceil(math.log2(need))))


def _horizons(configs, *, depth, width, init, noise):
    nets, stats = _build(configs, depth=depth, width=width, init=init, noise=noise)
    return np.asarray(eqx.filter_vmap(_training.default_horizon)(nets, stats))


# Default GD budget: members not converged are run again with these multiples of it.
GD_RERUN_FACTORS = (8, 64)


class DivergenceWarning(RuntimeWarning):
    """Gradient descent diverged for some members (their status is DIVERGED, phase times NaN)."""


def simulate_toy(
    configs: Sequence[MemberConfig],
    *,
    depth: int,
    width: int,
    init: str = "random",
    method: str = "flow",
    lr: float | None = 0.04,
    noise: float = 0.0,
    pad_to: int | None = None,
    n_steps: int | None = None,
    n_save: int = 512,
    t_max: float | None = None,
    on_divergence: str = "warn",
    _gd_budget: int | None = None,
) -> SimulationResult:
    """Simulate toy members (all with the same fusion layer) as ONE batched solve.

    `pad_to` pads the batch to a fixed size (repeating the last member) so that calls with fewer
    members reuse the compiled solver. Times are in gradient-flow units (GD: steps x lr).

    - `t_max`: horizon in gradient-flow time, kept as given: members not converged by then
      get status NOT_CONVERGED. For GD it sets `n_steps = ceil(t_max / lr)`. Default: the
      estimated horizon, continued for members that have not converged (flow: up to 64x the
      estimate; GD: the budget below, then 8x and 64x it).
    - `n_steps`: GD step budget, kept as given (give `n_steps` or `t_max`, not both). Default:
      the largest gradient-flow horizon of the batch / lr, rounded up to a power of two.
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
    validate_grid(
        {k: _unique([getattr(c, k) for c in configs]) for k in GRID_KEYS}, checked["depth"]
    )
    normalize_seeds([c.seed for c in configs])
    if len({c.fusion_layer for c in configs}) != 1:
        raise ValueError(
            "all members of one solve must share the fusion layer (the network structure)."
        )
    n_real = len(configs)
    padded = _pad(configs, pad_to)
    nets, stats = _build(padded, depth=depth, width=width, init=init, noise=noise)
    if method == "flow":
        traj = gradient_flow(nets, stats, n_save=n_save, t_max=t_max)
    else:
        traj = _solve_gd(
            nets, stats, lr, n_steps=n_steps, t_max=t_max, n_save=n_save, budget=_gd_budget
        )
    meas = measure(traj, stats)
    rows = _rows(
        configs,
        traj,
        meas,
        depth=depth,
        width=width,
        init=init,
        method=method,
        lr=lr,
        n_real=n_real,
    )
    for r in rows:
        r["noise"] = float(noise)
    if on_divergence == "warn":
        _warn_diverged(rows, list(range(n_real)), lr, nets, stats, n_real)
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


def _warn_diverged(rows, indices, lr, nets=None, stats=None, n_real=None, where="member") -> None:
    """One `DivergenceWarning` for the DIVERGED rows among `rows` (real members only);
    `indices` are the rows' positions to report (in this call, or in the sweep)."""
    bad = [(i, r) for i, r in zip(indices, rows, strict=True) if r["status"] == "DIVERGED"]
    if not bad:
        return
    limit = ""
    if nets is not None:
        real = jax.tree.map(lambda a: a[:n_real], (nets, stats))
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


def _rows(
    configs, traj: Trajectory, meas: PhaseMeasurements, *, depth, width, init, method, lr, n_real
) -> list[dict]:
    get = lambda a: np.asarray(a)[:n_real]  # noqa: E731
    codes = get(meas.status)
    ok = codes == Status.OK
    nan_unless_ok = lambda a: np.where(ok, get(a), np.nan)  # noqa: E731
    t_A, t_B, tr = nan_unless_ok(meas.t_A), nan_unless_ok(meas.t_B), nan_unless_ok(meas.time_ratio)
    mis = np.where(ok, np.asarray(meas.misattribution)[:n_real].reshape(n_real, -1)[:, 0], np.nan)
    plateau, final = nan_unless_ok(meas.plateau_loss), get(meas.final_loss)
    t_end, num_steps = get(traj.t_end), get(traj.num_steps)
    rows = []
    for i, c in enumerate(configs[:n_real]):
        theory = theory_time_ratio(depth, c.fusion_layer, c.rho, c.ratio, c.init_scale)
        ratio_i = float(tr[i])
        rel = (
            ratio_i / theory - 1.0 if math.isfinite(theory) and math.isfinite(ratio_i) else math.nan
        )
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
                "theory_time_ratio": theory,
                "rel_error": rel,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------
# CSV I/O
# ------------------------------------------------------------------------------------------------
def _fmt_cell(v) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float):
        # shortest round-tripping form: keys read back compare equal; NaN (no value) is empty
        return "" if math.isnan(v) else repr(v)
    return str(v)


def _parse_row(raw: Mapping[str, str]) -> dict:
    row: dict[str, Any] = {}
    for col in CSV_COLUMNS:
        s = raw.get(col)
        if s is None:
            raise ValueError(f"missing column {col}")
        if col in _INT_COLUMNS:
            row[col] = int(s)
        elif col in _STR_COLUMNS:
            if not s:
                raise ValueError(f"empty {col}")
            row[col] = s
        elif col in _BOOL_COLUMNS:
            if s not in ("True", "False"):
                raise ValueError(f"bad boolean {s!r}")
            row[col] = s == "True"
        else:
            row[col] = float(s) if s.strip() else math.nan  # empty: no value
    if row["status"] not in Status.__members__:
        raise ValueError(f"unknown status {row['status']!r}")
    if row["success"] != (row["status"] == "OK"):
        raise ValueError(f"success {row['success']} contradicts status {row['status']}")
    if not row["success"]:
        row.update(dict.fromkeys(PHASE_COLUMNS, math.nan))  # never a number for a failed member
    return row


def row_key(row: Mapping[str, Any]) -> tuple:
    return (
        int(row["fusion_layer"]),
        float(row["rho"]),
        float(row["ratio"]),
        float(row["init_scale"]),
        int(row["seed"]),
    )


def read_results(path: str | os.PathLike, *, strict: bool = False) -> list[dict]:
    """Read a sweep's ``results.csv`` (or its directory) into a list of typed row dicts.

    Incomplete lines (e.g. from a crash mid-write) are skipped, or raise with `strict=True`.
    Empty cells are NaN; the phase columns (`PHASE_COLUMNS`) of a row whose `status` is not OK
    are NaN whatever the file holds. A file written before per-member status codes (no
    `status` column) is refused with a one-line `ValueError`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    rows, _ = _read_csv(path, strict=strict)
    return rows


def _read_csv(path: Path, *, strict: bool = False) -> tuple[list[dict], int]:
    if not path.exists() or path.stat().st_size == 0:
        return [], 0
    with open(path, newline="") as fh:
        text = fh.read()
    lines = text.splitlines(keepends=True)
    bad = 0
    if lines and not lines[-1].endswith(("\n", "\r")):
        # The last line was cut off mid-write: even if it parses, a value may be truncated.
        if strict:
            raise ValueError(f"{path}, line {len(lines)}: incomplete last line (no line end).")
        lines, bad = lines[:-1], 1
    reader = csv.DictReader(lines)
    header = tuple(reader.fieldnames or ())
    if header[: len(LEGACY_CSV_COLUMNS)] == LEGACY_CSV_COLUMNS and "status" not in header:
        raise ValueError(
            f"{path} was written by an older multimodal_dln without per-member status columns "
            "(status, reason, t_end, num_steps), so its failed rows cannot be told apart; run the "
            "sweep again into a new folder (or delete this one)."
        )
    if header[: len(CSV_COLUMNS)] != CSV_COLUMNS:
        raise ValueError(
            f"{path} does not look like a multimodal_dln sweep results file: expected columns "
            f"{', '.join(CSV_COLUMNS)}; found {', '.join(header)}."
        )
    rows = []
    for i, raw in enumerate(reader, start=2):
        try:
            rows.append(_parse_row(raw))
        except (TypeError, ValueError) as err:
            if strict:
                raise ValueError(f"{path}, line {i}: unreadable row ({err}).") from None
            bad += 1
    return rows, bad


def _write_rows(path: Path, rows: list[dict], *, header: bool) -> None:
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([_fmt_cell(r[c]) for c in CSV_COLUMNS])
        fh.flush()
        os.fsync(fh.fileno())


def _rewrite_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    if tmp.exists():
        tmp.unlink()
    _write_rows(tmp, rows, header=True)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(_jsonable(obj), fh, indent=2, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _jsonable(obj):
    """Recursively convert NumPy scalars to Python and NaN / inf to None (valid JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ------------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------------
def _median(values) -> float:
    a = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    return float(np.median(a)) if a.size else math.nan


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict:
    """Aggregate sweep rows: per grid point (over seeds, successful runs only) and per
    (fusion layer, ratio) the median and max |sim / theory - 1|."""
    rows = list(rows)
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["fusion_layer"], r["ratio"], r["rho"], r["init_scale"]), []).append(r)
    points = []
    for (lf, ratio, rho, u0), rs in sorted(groups.items()):
        ok = [r for r in rs if r["success"]]
        tr = [r["time_ratio"] for r in ok if math.isfinite(r["time_ratio"])]
        depth = rs[0]["depth"]
        points.append(
            {
                "fusion_layer": lf,
                "ratio": ratio,
                "rho": rho,
                "init_scale": u0,
                "n": len(rs),
                "n_success": len(ok),
                "time_ratio_median": _median(tr),
                "time_ratio_mean": float(np.mean(tr)) if tr else math.nan,
                "time_ratio_std": float(np.std(tr)) if len(tr) > 1 else math.nan,
                "theory_time_ratio": theory_time_ratio(depth, lf, rho, ratio, u0),
                "rel_error_median": _median([r["rel_error"] for r in ok]),
                "misattribution_median": _median([r["misattribution"] for r in ok]),
                "misattribution_theory": theory_misattribution(depth, lf, rho, ratio),
            }
        )
    by_ratio = []
    keys = sorted({(r["fusion_layer"], r["ratio"]) for r in rows})
    for lf, ratio in keys:
        errs = [
            abs(r["rel_error"])
            for r in rows
            if r["fusion_layer"] == lf
            and r["ratio"] == ratio
            and r["success"]
            and math.isfinite(r["rel_error"])
        ]
        same = [r for r in rows if r["fusion_layer"] == lf and r["ratio"] == ratio]
        by_ratio.append(
            {
                "fusion_layer": lf,
                "ratio": ratio,
                "n": len(same),
                "n_success": sum(1 for r in same if r["success"]),
                "n_compared": len(errs),
                "median_abs_rel_error": float(np.median(errs)) if errs else math.nan,
                "max_abs_rel_error": float(np.max(errs)) if errs else math.nan,
            }
        )
    return {
        "n_members": len(rows),
        "n_success": sum(1 for r in rows if r["success"]),
        "failures": failures(rows),
        "by_ratio": by_ratio,
        "points": points,
    }


def failures(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The failed rows grouped by status: [{"status", "reason", "count"}], most frequent first."""
    groups: dict[tuple, int] = {}
    for r in rows:
        if not r["success"]:
            key = (r.get("status", "FAILED"), r.get("reason", "unknown"))
            groups[key] = groups.get(key, 0) + 1
    return [
        {"status": st, "reason": why, "count": n}
        for (st, why), n in sorted(groups.items(), key=lambda kv: -kv[1])
    ]


def failure_line(rows: Sequence[Mapping[str, Any]], what: str = "members") -> str | None:
    """ "N of M <what> failed: STATUS (count): reason; ..." or None when nothing failed."""
    fails = failures(rows)
    if not fails:
        return None
    n = sum(f["count"] for f in fails)
    parts = "; ".join(f"{f['status']} ({f['count']}): {f['reason']}" for f in fails)
    return f"{n} of {len(rows)} {what} failed: {parts}"


def format_error_table(summary: Mapping[str, Any]) -> str:
    """Plain-text table of `summary['by_ratio']` (per L_f and ratio: |sim / theory - 1|)."""
    lines = [
        f"{'L_f':>4} {'ratio':>7} {'runs':>5} {'compared':>8} {'median |sim/theory-1|':>22} {'max':>8}"
    ]
    for b in summary["by_ratio"]:
        med, mx = b["median_abs_rel_error"], b["max_abs_rel_error"]
        none = "n/a (none succeeded)" if b.get("n_success", 1) == 0 else "n/a (no theory)"
        med_s = f"{100 * med:.2f}%" if math.isfinite(med) else none
        mx_s = f"{100 * mx:.2f}%" if math.isfinite(mx) else "-"
        lines.append(
            f"{b['fusion_layer']:>4} {b['ratio']:>7.3g} {b['n']:>5} {b['n_compared']:>8} {med_s:>22} {mx_s:>8}"
        )
    return "\n".join(lines)


def swept_axes(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """(x, hue) for a time-ratio plot: x is rho if it takes > 1 value, else ratio, else
    init_scale, else fusion_layer; hue is the next of (ratio, fusion_layer, init_scale, rho)
    that varies (None if nothing else does)."""
    varies = {k: len({r[k] for r in rows}) > 1 for k in GRID_KEYS}
    x = next((k for k in ("rho", "ratio", "init_scale") if varies[k]), "fusion_layer")
    hue = next(
        (k for k in ("ratio", "fusion_layer", "init_scale", "rho") if k != x and varies[k]), None
    )
    return x, hue


# ------------------------------------------------------------------------------------------------
# The sweep driver
# ------------------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What `run_sweep` returns. `rows` holds every row in ``results.csv`` (earlier runs
    included when resuming); `n_run` how many members this call simulated."""

    out_dir: Path
    rows: list[dict]
    summary: dict
    n_run: int
    n_skipped: int
    wall_time_s: float
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def csv_path(self) -> Path:
        return self.out_dir / "results.csv"


def members(grid: Mapping[str, list], seeds: Sequence[int]) -> list[MemberConfig]:
    """The cartesian product grid x seeds, in grid order (fusion_layer slowest, seed fastest)."""
    return [
        MemberConfig(lf, rho, ratio, u0, seed)
        for lf, rho, ratio, u0, seed in itertools.product(
            grid["fusion_layer"], grid["rho"], grid["ratio"], grid["init_scale"], seeds
        )
    ]


def run_sweep(
    grid: Mapping[str, Any],
    *,
    depth: int,
    width: int,
    seeds: int | Sequence[int],
    init: str = "random",
    method: str = "flow",
    lr: float = 0.04,
    out_dir: str | os.PathLike,
    resume: bool = False,
    chunk_size: int = 64,
    progress: bool = True,
    noise: float = 0.0,
    n_save: int = 512,
    t_max: float | None = None,
    overwrite: bool = False,
    figure: bool = True,
    on_chunk: Callable[[list[dict]], None] | None = None,
    names: Mapping[str, str] | None = None,
) -> SweepResult:
    """Run (or resume) a toy-data sweep; results go to `out_dir`.

    **Arguments:**

    - `grid`: dict with lists (or single values) for ``fusion_layer`` (1..depth), ``rho``
      (in (-1, 1)), ``ratio`` (sigma_A / sigma_B > 0) and ``init_scale`` (u0 > 0).
    - `depth`, `width`: network depth L and hidden width.
    - `seeds`: number of seeds N (seeds 0..N-1) or an explicit list of seeds; every grid point
      is run once per seed. A member's network depends only on its seed.
    - `init`: "random" (authors' Gaussian scheme), "aligned" (balanced rank-one, aligned with
      the solution) or "entrywise" (every entry N(0, u0^2)).
    - `method`: "flow" (gradient flow, diffrax) or "gd" (gradient descent with learning rate
      `lr`; times reported as steps x lr). `lr` is ignored for flow.
    - `out_dir`: directory for ``results.csv``, ``config.json``, ``summary.json`` and
      ``time_ratio.png`` (created if needed).
    - `resume`: continue an existing sweep: members already in ``results.csv`` are skipped; the
      grid and seeds may differ (e.g. be extended) but the settings may not.
    - `chunk_size`: members per batched solve (fixed: the last chunk is padded).
    - `progress`: show a tqdm progress bar on stderr.
    - `noise`: label-noise std of the toy data.
    - `t_max`: horizon in gradient-flow time, kept as given (members not converged by then are
      NOT_CONVERGED); for GD it sets n_steps = ceil(t_max / lr). Default None: the estimated
      horizon, continued for unconverged members (see `simulate_toy`). A setting that changes
      results: resuming with another `t_max` is refused.
    - `overwrite`: delete this directory's previous sweep files first (ignored with `resume`).
    - `figure`: write ``time_ratio.png`` at the end.
    - `on_chunk`: called with each finished chunk's rows, after they are on disk.
    - `names`: display names for parameters in error messages (the CLI passes its flags).

    **Returns:** a `SweepResult`. Rows are appended to ``results.csv`` after every chunk
    (flushed and fsynced), so an interrupted sweep keeps every finished chunk.
    """
    t_start = time.perf_counter()
    settings = validate_settings(
        depth=depth,
        width=width,
        init=init,
        method=method,
        lr=lr,
        noise=noise,
        t_max=t_max,
        names=names,
    )
    settings["n_save"] = int(n_save)
    grid = validate_grid(grid, settings["depth"], names)
    seed_list = normalize_seeds(seeds, names)
    chunk_size = _check_chunk_size(chunk_size)
    out = Path(out_dir)
    existing = _prepare_out_dir(out, settings, resume=resume, overwrite=overwrite, names=names)
    _write_config(out / "config.json", settings, grid, seed_list, chunk_size, resume)

    done = {row_key(r) for r in existing}
    all_members = members(grid, seed_list)
    todo = [m for m in all_members if m.key not in done]
    new_rows = _run_members(
        todo, all_members, settings, chunk_size, out / "results.csv", progress, on_chunk
    )
    index = {m.key: i for i, m in enumerate(all_members)}
    _warn_diverged(
        new_rows,
        [index[row_key(r)] for r in new_rows],
        settings["lr"] or math.nan,
        where="sweep member",
    )
    return _finish_sweep(
        out,
        existing + new_rows,
        settings,
        len(new_rows),
        len(all_members) - len(todo),
        t_start,
        figure,
    )


def _prepare_out_dir(out: Path, settings, *, resume, overwrite, names) -> list[dict]:
    """Create `out`; return the rows to keep (resume), after refusing a clash."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{_n('out_dir', names)} must be a directory; {out} is a file.")
    out.mkdir(parents=True, exist_ok=True)
    csv_path, cfg_path = out / "results.csv", out / "config.json"
    if resume:
        return _load_for_resume(csv_path, cfg_path, settings, names)
    if overwrite:
        for p in (csv_path, cfg_path, out / "summary.json", out / "time_ratio.png"):
            if p.exists():
                p.unlink()
    elif csv_path.exists() and csv_path.stat().st_size > 0:
        raise ValueError(
            f"{out} already holds a sweep (results.csv); pass resume=True (CLI: --resume) to continue "
            "it, or choose another output directory."
        )
    return []


def _write_config(cfg_path: Path, settings, grid, seed_list, chunk_size, resume) -> None:
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    previous = json.loads(cfg_path.read_text()) if (resume and cfg_path.exists()) else {}
    config = {
        "package": "multimodal_dln",
        "data": "toy",
        "settings": settings,
        "grid": grid,
        "seeds": seed_list,
        "chunk_size": chunk_size,
        "created": previous.get("created", now),
        "updated": now,
        "time_units": "gradient-flow time (tau = 1); for gd, steps x lr",
    }
    if previous.get("grid") and previous.get("grid") != grid:
        config["previous_grids"] = previous.get("previous_grids", []) + [previous["grid"]]
    _write_json(cfg_path, config)


def _gd_budget(everyone, settings, chunk_size) -> int:
    """One GD step budget per fusion layer, from every member of the grid (done or not), so
    chunking and interruption/resume do not change the GD save grid."""
    horizons = [
        _horizons(
            _pad(everyone[i : i + chunk_size], chunk_size),
            depth=settings["depth"],
            width=settings["width"],
            init=settings["init"],
            noise=settings["noise"],
        )
        for i in range(0, len(everyone), chunk_size)
    ]
    return gd_n_steps(np.concatenate(horizons), settings["lr"])


def _run_members(todo, all_members, settings, chunk_size, csv_path, progress, on_chunk):
    """Solve `todo` chunk by chunk, appending each chunk's rows to `csv_path`; return them."""
    from tqdm import tqdm

    new_rows: list[dict] = []
    header_needed = not (csv_path.exists() and csv_path.stat().st_size > 0)
    bar = tqdm(
        total=len(todo),
        file=sys.stderr,
        disable=not progress,
        unit="member",
        desc="sweep",
        leave=True,
    )
    try:
        for lf in dict.fromkeys(m.fusion_layer for m in all_members):
            group = [m for m in todo if m.fusion_layer == lf]
            if not group:
                continue
            bar.set_description(f"sweep L_f={lf}")
            budget = None
            if settings["method"] == "gd" and settings["t_max"] is None:
                budget = _gd_budget(
                    [m for m in all_members if m.fusion_layer == lf], settings, chunk_size
                )
            for i in range(0, len(group), chunk_size):
                res = simulate_toy(
                    group[i : i + chunk_size],
                    **{
                        k: settings[k]
                        for k in (
                            "depth",
                            "width",
                            "init",
                            "method",
                            "lr",
                            "noise",
                            "n_save",
                            "t_max",
                        )
                    },
                    pad_to=chunk_size,
                    on_divergence="ignore",
                    _gd_budget=budget,
                )
                rows = [{c: r[c] for c in CSV_COLUMNS} for r in res.rows]
                _write_rows(csv_path, rows, header=header_needed)
                header_needed = False
                new_rows.extend(rows)
                bar.update(len(rows))
                if on_chunk is not None:
                    on_chunk(rows)
    finally:
        bar.close()
    return new_rows


def _finish_sweep(out, all_rows, settings, n_run, n_skipped, t_start, figure) -> SweepResult:
    """Summary (and figure) of every row in the folder; writes summary.json."""
    summary = summarize(all_rows)
    summary["settings"] = settings
    summary["n_run"] = n_run
    summary["n_skipped"] = n_skipped
    summary["wall_time_s"] = time.perf_counter() - t_start
    files = {
        "results": out / "results.csv",
        "config": out / "config.json",
        "summary": out / "summary.json",
    }
    if figure and all_rows:
        from .figures import plot_time_ratio

        x, hue = swept_axes(all_rows)
        fig_path = out / "time_ratio.png"
        plot_time_ratio(all_rows, x=x, hue=hue, path=fig_path)
        files["figure"] = fig_path
        summary["figure"] = fig_path.name
    _write_json(out / "summary.json", summary)
    return SweepResult(out, all_rows, summary, n_run, n_skipped, summary["wall_time_s"], files)


def _load_for_resume(csv_path: Path, cfg_path: Path, settings: dict, names) -> list[dict]:
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text()).get("settings", {})
        except json.JSONDecodeError as err:
            raise ValueError(f"cannot resume: {cfg_path} is not valid JSON ({err}).") from None
        diffs = [k for k in _SETTING_KEYS if k in old and old[k] != settings[k]]
        if diffs:
            detail = "; ".join(
                f"{_n(k, names)}: stored {old[k]!r}, now {settings[k]!r}" for k in diffs
            )
            raise ValueError(
                f"cannot resume the sweep in {cfg_path.parent}: its settings differ ({detail}). Use the "
                "same settings, or another output directory for a new sweep."
            )
    try:
        rows, bad = _read_csv(csv_path)
    except ValueError as err:
        raise ValueError(f"cannot resume the sweep in {csv_path.parent}: {err}") from None
    for r in rows:
        for k in ("depth", "width", "init", "method"):
            if r[k] != settings[k]:
                raise ValueError(
                    f"cannot resume the sweep in {csv_path.parent}: results.csv holds rows with "
                    f"{_n(k, names)} = {r[k]!r}, but this run has {settings[k]!r}."
                )
    # Drop incomplete lines (a crash mid-write) and duplicates, rewriting the file if needed.
    unique, seen = [], set()
    for r in rows:
        if row_key(r) not in seen:
            seen.add(row_key(r))
            unique.append(r)
    if bad or len(unique) != len(rows):
        _rewrite_csv(csv_path, unique)
    return unique
