"""Continuing members that reach the estimated horizon without converging.

`gradient_flow` estimates a horizon per member (`_training.default_horizon`). A member that has
not converged by then is not kept with a plausible but wrong phase time: it is restarted from
its final state on a continued save grid, the horizon growing ~8x per round, until it converges
or the horizon reaches a cap. The log save grid is continued exactly (`extended_grid`), so the
saves already made are carried over bit for bit and the result is the same trajectory a solve
with the longer horizon would have saved at those times (to the solver tolerance).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._solve import pad_members, scatter_members, unconverged_members
from ._trajectory import Trajectory

__all__ = ["extended_grid", "continue_unconverged"]

_EXTEND = 8.0  # each continuation multiplies the horizon by about this factor


def extended_grid(
    ts: Float[Array, "*batch n"], shift: int, t_min_fraction: float
) -> Float[Array, "*batch n"]:
    """The log grid of `save_grid` continued by `shift` points: entry j is entry j + shift of
    `ts` where that exists (bit-identical, so saves carry over), and the same geometric
    progression beyond; the new horizon is `ts[-1] * q**shift`, q the grid's ratio."""
    n = ts.shape[-1]
    t_max = ts[..., -1:]
    log_q = -jnp.log(t_min_fraction) / (n - 2)
    j = jnp.arange(1, n)
    beyond = t_max * jnp.exp(log_q * (j + shift - (n - 1)).astype(ts.dtype))
    kept = jnp.take(ts, jnp.minimum(j + shift, n - 1), axis=-1)
    grid = jnp.where(j + shift <= n - 1, kept, beyond)
    return jnp.concatenate([jnp.zeros_like(t_max), grid], axis=-1)


def continue_unconverged(run, args, axes, t_max, t_min_fraction, horizon_cap, traj=None):
    """Solve, then continue members that reached the estimated horizon without converging
    (only when the horizon was estimated, `t_max=None`): each round restarts them from their
    final state on `extended_grid` (the horizon x ~8, earlier saves carried over) until they
    converge or the horizon reaches `horizon_cap` x the estimate."""
    if traj is None:
        traj = run(args, axes)
    if isinstance(traj.status, jax.core.Tracer):
        return traj  # under the caller's jit: statuses cannot be read, no continuation
    if t_max is None and horizon_cap > 1:
        n = traj.ts.shape[-1]
        log_q = -np.log(t_min_fraction) / (n - 2)
        shift = max(1, int(round(np.log(_EXTEND) / log_q)))
        rounds = int(np.floor(np.log(horizon_cap) / (shift * log_q) + 1e-9))
        for _ in range(rounds):
            traj = _extend(run, args, axes, traj, shift, t_min_fraction)
    return traj


def _extend(run, args, axes, traj, shift, t_min_fraction):
    todo = unconverged_members(traj.status)
    if todo.size == 0:
        return traj
    batched = traj.ts.ndim == 2
    if not batched:
        idx, sub = None, traj
    else:
        idx = pad_members(todo, traj.ts.shape[0])  # a small batch: its own compiled solve
        sub = traj[idx]
    objective = args[1]
    _, _, _, atol, gap0, valid = args[2:]
    if batched:
        objective = objective if axes[1] is None else jax.tree.map(lambda a: a[idx], objective)
        atol, gap0, valid = atol[idx], gap0[idx], valid[idx]
    ts = extended_grid(sub.ts, shift, t_min_fraction)
    y0 = eqx.filter(sub.final, eqx.is_array)
    more_axes = None if axes is None else (0, axes[1]) + (0,) * 6
    more = run((y0, objective, sub.t_end, ts[..., -1], ts, atol, gap0, valid), more_axes)
    merged = _merge(sub, more, ts, shift)
    return scatter_members(traj, merged, todo) if batched else merged


def _merge(old: Trajectory, new: Trajectory, ts, shift) -> Trajectory:
    """Saves at times <= the old horizon come from `old` (shifted by `shift`), later ones from
    the continuation `new`; step counts add up."""
    n = ts.shape[-1]
    src = jnp.minimum(jnp.arange(n) + shift, n - 1).at[0].set(0)
    carried = (jnp.arange(n) + shift <= n - 1) | (jnp.arange(n) == 0)

    def pick(a_old, a_new):
        shifted = jnp.take(a_old, src, axis=old.ts.ndim - 1)
        mask = carried.reshape(carried.shape + (1,) * (a_old.ndim - old.ts.ndim))
        return jnp.where(mask, shifted, a_new)

    return eqx.tree_at(
        lambda t: (t.ts, t.weights, t.weights_dot, t.loss, t.num_steps),
        new,
        (
            ts,
            pick(old.weights, new.weights),
            pick(old.weights_dot, new.weights_dot),
            pick(old.loss, new.loss),
            old.num_steps + new.num_steps,
        ),
    )
