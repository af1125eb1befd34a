"""Gradient flow tau dW_l/dt = -dL/dW_l for every layer, integrated with diffrax, batched.

The theory's continuous-time limit of full-batch gradient descent (digest 1.3: tau = 1/lr, so
one unit of time here is 1/lr epochs). The vector field is the autodiff gradient of the loss
written through the statistics (`Statistics.loss`; no loop over samples) or, for nonlinear
networks, of the sample loss.

Each member has its own adaptive step size (`vmap` of a diffrax solve), stops at its own
convergence event (loss gap below `converge_rtol` x initial gap), and reports its own status;
saved output is only the effective weights, their derivative and the loss on a log-spaced grid.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _training as _tr
from .dataset import Dataset
from ._sharding import resolve_mesh, run_sharded
from .network import FusionDLN
from .statistics import Statistics
from .trajectory import Trajectory

__all__ = ["gradient_flow", "save_grid"]


def save_grid(t_max: ArrayLike, n_save: int, t_min_fraction: float = 1e-5) -> Float[Array, " n"]:
    """[0] followed by n_save - 1 log-spaced times from t_min_fraction * t_max to t_max."""
    t_max = jnp.asarray(t_max, dtype=float)
    grid = jnp.exp(jnp.linspace(jnp.log(t_min_fraction * t_max), jnp.log(t_max), n_save - 1))
    grid = jnp.minimum(grid, t_max).at[-1].set(t_max)  # exp/log round-off must not pass t1
    return jnp.concatenate([jnp.zeros((1,), t_max.dtype), grid])


def gradient_flow(
    net: FusionDLN,
    objective: Statistics | Dataset,
    *,
    t_max: ArrayLike | None = None,
    n_save: int = 512,
    t_min_fraction: float = 1e-5,
    rtol: float = 1e-8,
    atol: float | None = None,
    converge_rtol: float = 1e-6,
    max_steps: int = 200_000,
    solver: diffrax.AbstractSolver | None = None,
    dtype=None,
    shard="auto",
    buckets: int = 1,
    cost: ArrayLike | None = None,
) -> Trajectory:
    """Integrate gradient flow for one network or a batch of networks.

    **Arguments:**

    - `net`: a `FusionDLN`, or a batch of them (every array with a leading axis, e.g. built with
      `eqx.filter_vmap(FusionDLN.init ...)`).
    - `objective`: `Statistics` (linear networks), or a `Dataset` of samples (needed for ReLU).
      Either may be batched along the same leading axis as `net`, or shared.
    - `t_max`: horizon (scalar or per member). Default: a generous estimate from the statistics
      and the initial scale (`_training.default_horizon`). Runs stop earlier at convergence.
    - `n_save`: number of save times: t = 0 and a log-spaced grid up to `t_max`.
    - `rtol`, `atol`: step-size controller tolerances. `atol` defaults to 1e-6 x the smallest
      initial RMS weight entry, because an atol near the weight scale biases the escape time
      from the small-init saddle (stack notes 1.6).
    - `converge_rtol`: a member stops once L - L* <= converge_rtol (L(0) - L*).
    - `max_steps`: step budget per member; exceeding it marks the member failed.
    - `solver`: a diffrax solver (default `Tsit5()`; `Kvaerno5()` for small stiff problems).
    - `dtype`: compute dtype (default: the network's, float64 when x64 is enabled). float32
      halves memory traffic but limits how small an init the phase times stay accurate for.
    - `shard`: split a batch over devices with `jax.shard_map` on a 1-D mesh: "auto" (default:
      all devices when there are several), False, or a `jax.sharding.Mesh` with axis "batch".
      Results equal the single-device run; see `multimodal_dln._sharding`.
    - `buckets`: solve a batch in this many groups of members with similar predicted duration,
      one after another (a vmapped solve runs until its slowest member is done, so mixing
      short and long runs wastes work; `benchmarks/` measures the gain).
    - `cost`: per-member predicted duration used to form the buckets (e.g. the theory's t_B);
      default: the horizon estimate `_training.default_horizon`.

    **Returns:** a `Trajectory` (batched like the inputs).
    """
    net, objective, batch, net_axis, obj_axis = _tr.prepare(net, objective)
    if dtype is not None:
        net, objective = (
            jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)
            for tree in (net, objective)
        )
    n_save = int(n_save)
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise ValueError(f"buckets must be a positive integer; got {buckets!r}.")
    if n_save < 3:
        raise ValueError(f"n_save must be >= 3; got {n_save}.")
    for name, v in (("rtol", rtol), ("converge_rtol", converge_rtol)):
        if not (0 < v < 1):
            raise ValueError(f"{name} must be in (0, 1); got {v!r}.")
    if atol is not None and not atol > 0:
        raise ValueError(f"atol must be > 0; got {atol!r}.")
    if t_max is not None:
        from ._validation import check_positive

        t_max = check_positive("t_max", jnp.asarray(t_max, dtype=float))
    params, static = eqx.partition(net, eqx.is_array)
    cfg = _Config(n_save, t_min_fraction, rtol, atol, converge_rtol, max_steps, solver or diffrax.Tsit5())
    t_axis = None if t_max is None or jnp.ndim(t_max) == 0 else 0
    if batch is None:
        return _solve_jit(params, static, objective, t_max, cfg)
    if t_axis == 0 and t_max.shape[0] != batch:
        raise ValueError(f"t_max has {t_max.shape[0]} entries for a batch of {batch}.")
    solve = _BatchSolve(static, cfg, (net_axis, obj_axis, t_axis))
    mesh = resolve_mesh(shard, batch)
    args = (params, objective, t_max)

    def run(args):
        if mesh is None:
            return _call_jit(solve, *args)
        return run_sharded(solve, args, solve.axes, batch_of(args), mesh)

    def batch_of(args):
        return jax.tree.leaves(args[0])[0].shape[0] if net_axis == 0 else jax.tree.leaves(args[1])[0].shape[0]

    if buckets == 1:
        return run(args)
    return _run_in_buckets(run, args, solve.axes, batch, buckets, cost, net, objective, net_axis, obj_axis)


def _take(tree, idx, axis):
    if axis is None:
        return tree
    return jax.tree.map(lambda a: a[idx] if eqx.is_array(a) else a, tree)


def _run_in_buckets(run, args, axes, batch, buckets, cost, net, objective, net_axis, obj_axis):
    """Sort members by predicted cost, solve `buckets` equal-size groups one after another (one
    compiled function: the last group is padded by repeating a member), and restore the order.

    A vmapped solve steps until its slowest member is done (stack notes 1.1), so grouping
    members of similar duration raises the useful-work fraction."""
    if cost is None:
        cost = eqx.filter_vmap(_tr.default_horizon, in_axes=(net_axis, obj_axis))(net, objective)
    cost = np.asarray(cost, dtype=float)
    if cost.shape != (batch,):
        raise ValueError(f"cost must have one entry per member ({batch}); got shape {cost.shape}.")
    order = np.argsort(cost, kind="stable")
    size = -(-batch // buckets)
    pieces = []
    for start in range(0, batch, size):
        idx = order[start : start + size]
        idx = np.concatenate([idx, np.full(size - idx.size, idx[-1])])
        out = run(tuple(_take(a, jnp.asarray(idx), ax) for a, ax in zip(args, axes, strict=True)))
        pieces.append((idx, out))
    flat_idx = np.concatenate([p[0] for p in pieces])
    inverse = np.empty(batch, dtype=np.int64)
    first = np.ones(flat_idx.size, bool)
    first[np.unique(flat_idx, return_index=True)[1]] = False  # padded repeats come later
    positions = np.arange(flat_idx.size)[~first]
    inverse[flat_idx[~first]] = positions
    merged = jax.tree.map(
        lambda *xs: jnp.concatenate(xs, axis=0) if eqx.is_array(xs[0]) else xs[0], *[p[1] for p in pieces]
    )
    return jax.tree.map(lambda a: a[jnp.asarray(inverse)] if eqx.is_array(a) else a, merged)


class _Config(eqx.Module):
    n_save: int = eqx.field(static=True)
    t_min_fraction: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    converge_rtol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    solver: diffrax.AbstractSolver = eqx.field(static=True)


def _solve_one(params, static, objective, t_max, cfg: _Config) -> Trajectory:
    net0 = eqx.combine(params, static)
    # The ODE state is the flat parameter vector: one array per RK stage op instead of one per
    # layer (fewer tiny XLA ops; stack notes 1.7).
    flat0, unravel = jax.flatten_util.ravel_pytree(params)
    tree_loss = _tr.loss_fn_for(static, objective)

    def loss_fn(flat):
        return tree_loss(unravel(flat))

    grad_fn = jax.grad(loss_fn)

    def vector_field(t, p, args):
        return -grad_fn(p)

    def readout(p):
        return _tr.readout(eqx.combine(unravel(p), static), objective)

    def summary(t, p, args):
        w, w_dot = jax.jvp(readout, (p,), (vector_field(t, p, args),))
        return w, w_dot, loss_fn(p)

    l_star = _tr.target_loss(net0, objective)
    gap0 = loss_fn(flat0) - l_star

    def converged(t, y, args, **kwargs):
        return loss_fn(y) - l_star <= cfg.converge_rtol * gap0

    if t_max is None:
        t_max = _tr.default_horizon(net0, objective)
    t_max = jnp.asarray(t_max, flat0.dtype)  # time dtype sets the state dtype (diffrax #349)
    ts = save_grid(t_max, cfg.n_save, cfg.t_min_fraction).astype(flat0.dtype)
    if cfg.atol is None:
        rms = jnp.stack([jnp.sqrt(jnp.mean(a**2)) for a in jax.tree.leaves(params)])
        atol = 1e-6 * jnp.maximum(jnp.min(rms), jnp.finfo(flat0.dtype).tiny)
    else:
        atol = cfg.atol
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=summary), diffrax.SubSaveAt(t1=True)])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        cfg.solver,
        t0=jnp.zeros((), ts.dtype),
        t1=t_max,
        dt0=None,
        y0=flat0,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=cfg.rtol, atol=atol),
        event=diffrax.Event(converged),
        max_steps=cfg.max_steps,
        throw=False,
        adjoint=diffrax.ForwardMode(),
    )
    (w, w_dot, lss), final_params = sol.ys
    final_params = final_params[0]
    t_end = sol.ts[1][0]
    saved = jnp.isfinite(sol.ts[0])
    w_end, _, l_end = summary(t_end, final_params, None)
    w = jnp.where(saved[:, None, None], w, w_end)
    w_dot = jnp.where(saved[:, None, None], w_dot, 0.0)
    lss = jnp.where(saved, lss, l_end)
    solver_ok = (sol.result == diffrax.RESULTS.successful) | (sol.result == diffrax.RESULTS.event_occurred)
    converged_flag = sol.result == diffrax.RESULTS.event_occurred
    return Trajectory(
        ts=ts,
        weights=w,
        weights_dot=w_dot,
        loss=lss,
        t_end=t_end,
        converged=converged_flag,
        solver_ok=solver_ok & jnp.isfinite(l_end),
        num_steps=sol.stats["num_steps"],
        final=eqx.combine(unravel(final_params), static),
        d_A=net0.d_A,
    )


@eqx.filter_jit
def _solve_jit(params, static, objective, t_max, cfg):
    return _solve_one(params, static, objective, t_max, cfg)


class _BatchSolve(eqx.Module):
    """The vmapped solve as a hashable callable (its configuration is static), so that both the
    single-device jit and the sharded path compile once per structure."""

    static: FusionDLN = eqx.field(static=True)
    cfg: _Config = eqx.field(static=True)
    axes: tuple = eqx.field(static=True)

    def __call__(self, params, objective, t_max):
        fn = eqx.filter_vmap(lambda p, o, t: _solve_one(p, self.static, o, t, self.cfg), in_axes=self.axes)
        return fn(params, objective, t_max)


@eqx.filter_jit
def _call_jit(fn, *args):
    return fn(*args)
