"""Solver options shared by the integrators: one validated, static configuration.

`gradient_flow`, `reduced_flow` (and the balanced flow of Wu et al. 2022) integrate with an
adaptive diffrax solver and a PID step-size controller, save summaries on the log grid of
`save_grid`, and stop at the convergence event L - L* <= converge_rtol (L(0) - L*)
(docs/theory.md §7). Their options are checked here once and frozen into a `SolverConfig`, a
static (hashable) part of the compiled solve: a new value recompiles, a new batch of the same
shapes does not.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from ._validation import (
    check_option_min,
    check_option_open,
    check_positive,
    check_positive_int,
)

__all__ = [
    "HORIZON_CAP",
    "SolverConfig",
    "check_horizon_cap",
    "check_t_min_fraction",
    "default_atol",
    "solver_config",
]

HORIZON_CAP = 64.0
"""Default: continue unconverged members up to 64 x the horizon estimate (docs/theory.md §7)."""

ATOL_PER_WEIGHT = 1e-6
"""Default absolute tolerance of the network flows, relative to the smallest initial RMS weight
entry: an atol near the weight scale would bias the escape time from the small-init saddle
(docs/theory.md §7)."""


class SolverConfig(eqx.Module):
    """Validated solver options (all static).

    - `n_save`: save times per member (t = 0 and a log grid up to the horizon), >= 3.
    - `rtol`, `atol`: PID controller tolerances; `atol` None means a per-member default
      chosen by the integrator (`default_atol` for networks).
    - `converge_rtol`: the convergence event's relative loss-gap tolerance.
    - `max_steps`: step budget per member and solve.
    - `solver`: the diffrax solver (Tsit5 unless given).
    """

    n_save: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    converge_rtol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    solver: diffrax.AbstractSolver = eqx.field(static=True)


def solver_config(n_save, rtol, atol, converge_rtol, max_steps, solver) -> SolverConfig:
    """Check the options (one-line `ValueError` naming the bad one) and freeze them in the
    order of `SolverConfig`'s fields."""
    n_save = check_positive_int("n_save", n_save)
    if n_save < 3:
        raise ValueError(f"n_save must be an integer >= 3; got {n_save}.")
    max_steps = check_positive_int("max_steps", max_steps)
    rtol = check_option_open("rtol", rtol, 0.0, 1.0)
    converge_rtol = check_option_open("converge_rtol", converge_rtol, 0.0, 1.0)
    atol = check_option_min("atol", atol, 0.0, strict=True, allow_none=True)
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be a diffrax solver (e.g. diffrax.Tsit5()); got {solver!r}.")
    return SolverConfig(n_save, rtol, atol, converge_rtol, max_steps, solver or diffrax.Tsit5())


def check_t_min_fraction(t_min_fraction) -> float:
    """First nonzero save time / horizon, in (0, 1)."""
    return check_option_open("t_min_fraction", t_min_fraction, 0.0, 1.0)


def check_horizon_cap(horizon_cap) -> float:
    """Continuation cap (x the horizon estimate), a finite number >= 1 (1: no continuation)."""
    return check_option_min("horizon_cap", horizon_cap, 1.0, strict=False)


def default_atol(params) -> jax.Array:
    """`ATOL_PER_WEIGHT` x the smallest RMS entry over the array leaves of `params` (floored at
    the dtype's smallest normal number), for one member."""
    leaves = jax.tree.leaves(params)
    dtype = leaves[0].dtype
    rms = jnp.stack([jnp.sqrt(jnp.mean(a**2)) for a in leaves])
    return ATOL_PER_WEIGHT * jnp.maximum(jnp.min(rms), jnp.finfo(dtype).tiny)


def check_run_options(t_max, batch, t_min_fraction, horizon_cap, buckets, chunk_steps, pool_size):
    """Checked (t_max, t_min_fraction, horizon_cap); an explicit horizon `t_max` is > 0 and
    finite, a scalar or one per member (None: estimated per member)."""
    check_positive_int("buckets", buckets)
    check_compaction(chunk_steps, pool_size, buckets)
    t_min_fraction = check_t_min_fraction(t_min_fraction)
    horizon_cap = check_horizon_cap(horizon_cap)
    if t_max is None:
        return None, t_min_fraction, horizon_cap
    t_max = check_positive("t_max", jnp.asarray(t_max, dtype=float))
    if t_max.ndim > 1 or (t_max.ndim == 1 and t_max.shape[0] != (batch or 1)):
        raise ValueError(
            f"t_max must be a scalar or have one entry per member ({batch}); "
            f"got shape {t_max.shape}."
        )
    return t_max, t_min_fraction, horizon_cap


def check_compaction(chunk_steps, pool_size, buckets):
    if chunk_steps is None and pool_size is None:
        return
    if chunk_steps is None:
        raise ValueError("pool_size needs chunk_steps (compaction); got chunk_steps=None.")
    check_positive_int("chunk_steps", chunk_steps)
    if buckets != 1:
        raise ValueError(f"chunk_steps replaces buckets; got buckets={buckets} as well.")
