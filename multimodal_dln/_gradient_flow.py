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
from ._sharding import resolve_mesh, run_sharded
from ._validation import check_dtype, check_positive, check_positive_int, check_solve_memory
from ._dataset import Dataset
from ._network import FusionDLN
from ._statistics import Statistics
from ._continuation import continue_unconverged as _continue
from ._trajectory import Trajectory, fill_after_end, run_status

__all__ = ["gradient_flow", "save_grid"]


HORIZON_CAP = 64.0  # default: continue unconverged members up to 64 x the horizon estimate
_SOLVER_COPIES = 16  # state-sized arrays a Tsit5 step holds per member (memory estimate)


def save_grid(t_max: ArrayLike, n_save: int, t_min_fraction: ArrayLike = 1e-5) -> Float[Array, " n"]:
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
    horizon_cap: float = HORIZON_CAP,
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
    - `t_max`: horizon (scalar or per member). Default: an estimate from the statistics and the
      initial scale (`_training.default_horizon`), and members that have not converged by
      then continue from their final state, the horizon growing ~8x per round, up to
      `horizon_cap` x the estimate. Runs stop earlier at convergence. An explicit `t_max` is
      kept as given (members not converged by then have status `NOT_CONVERGED`).
    - `n_save`: number of save times: t = 0 and a log-spaced grid up to `t_max`.
    - `t_min_fraction`: first nonzero save time / t_max, in (0, 1).
    - `rtol`, `atol`: step-size controller tolerances. `atol` defaults to 1e-6 x the smallest
      initial RMS weight entry, because an atol near the weight scale biases the escape time
      from the small-init saddle.
    - `converge_rtol`: a member stops once L - L* <= converge_rtol (L(0) - L*).
    - `max_steps`: step budget per member and round; exceeding it gives `STEP_BUDGET`.
    - `horizon_cap`: see `t_max` (>= 1; 1 turns continuation off).
    - `solver`: a diffrax solver (default `Tsit5()`; `Kvaerno5()` for small stiff problems).
    - `dtype`: compute dtype, float32 or float64 (default: the network's, float64 when x64 is
      enabled). float32 limits how small an init the phase times stay accurate for.
    - `shard`: split a batch over devices with `jax.shard_map` on a 1-D mesh: "auto" (default:
      all devices when there are several), False, or a `jax.sharding.Mesh` with axis "batch".
      Results equal the single-device run; see `multimodal_dln._sharding`.
    - `buckets`: solve a batch in this many groups of members with similar predicted duration,
      one after another (a vmapped solve runs until its slowest member is done, so mixing
      short and long runs wastes work; `benchmarks/` measures the gain).
    - `cost`: per-member predicted duration used to form the buckets (e.g. the theory's t_B);
      default: the horizon estimate `_training.default_horizon`.

    **Returns:** a `Trajectory` (batched like the inputs) whose `status` says per member whether
    it converged and, if not, why (`multimodal_dln.Status`). Concrete invalid inputs raise a
    `ValueError` naming the member; members found invalid only inside a trace (e.g. NaN
    statistics from a vmapped constructor) get `INVALID_INPUT` while the rest are solved.
    """
    net, objective, batch, net_axis, obj_axis = _tr.prepare(net, objective)
    if dtype is not None:
        dtype = check_dtype(dtype)
        net, objective = (
            jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)
            for tree in (net, objective)
        )
    cfg, t_min_fraction, horizon_cap = _config(
        n_save, t_min_fraction, rtol, atol, converge_rtol, max_steps, horizon_cap, solver, buckets
    )
    itemsize = jnp.dtype(jax.tree.leaves(eqx.filter(net, eqx.is_array))[0].dtype).itemsize
    check_solve_memory(batch or 1, _tr.n_params_per_member(net, net_axis), itemsize,
                       copies=_SOLVER_COPIES, what="for the solver stages")
    if t_max is not None:
        t_max = check_positive("t_max", jnp.asarray(t_max, dtype=float))
        if t_max.ndim > 1 or (t_max.ndim == 1 and t_max.shape[0] != (batch or 1)):
            raise ValueError(f"t_max must be a scalar or have one entry per member ({batch}); got shape {t_max.shape}.")
    params, static = eqx.partition(net, eqx.is_array)
    t_axis = None if t_max is None or jnp.ndim(t_max) == 0 else 0
    if batch is None:
        first = _FirstSolve(static, cfg, None, t_min_fraction)
        traj, start = _call_jit(first, params, objective, t_max)
        solve = _Solve(static, cfg, None)
        run_more = lambda a, ax: _call_jit(solve, *a)  # noqa: E731
        return _continue(run_more, (params, objective) + start, None, t_max, t_min_fraction, horizon_cap, traj)
    mesh = resolve_mesh(shard, batch)

    def run(fn, args, axes):
        if mesh is None:
            return _call_jit(fn, *args)
        size = jax.tree.leaves(args[axes.index(0)])[0].shape[0]
        return run_sharded(fn, args, axes, size, mesh)

    first_axes = (net_axis, obj_axis, t_axis)
    first = _FirstSolve(static, cfg, first_axes, t_min_fraction)
    args = (params, objective, t_max)
    if buckets == 1:
        traj, start = run(first, args, first_axes)
    else:
        traj, start = _run_in_buckets(lambda a: run(first, a, first_axes), args, first_axes, batch, buckets,
                                      cost, net, objective, net_axis, obj_axis)

    def run_more(args, axes):
        return run(_Solve(static, cfg, axes), args, axes)

    axes = (net_axis, obj_axis) + (0,) * 6
    return _continue(run_more, (params, objective) + start, axes, t_max, t_min_fraction, horizon_cap, traj)


def _config(n_save, t_min_fraction, rtol, atol, converge_rtol, max_steps, horizon_cap, solver, buckets):
    """Validate the solver options; return the static `_Config` and the checked floats."""
    n_save = check_positive_int("n_save", n_save)
    if n_save < 3:
        raise ValueError(f"n_save must be an integer >= 3; got {n_save}.")
    check_positive_int("buckets", buckets)
    max_steps = check_positive_int("max_steps", max_steps)
    floats = {}
    for name, v, lo, hi in (
        ("t_min_fraction", t_min_fraction, 0.0, 1.0),
        ("rtol", rtol, 0.0, 1.0),
        ("converge_rtol", converge_rtol, 0.0, 1.0),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not lo < v < hi:
            raise ValueError(f"{name} must be a number in the open interval ({lo:g}, {hi:g}); got {v!r}.")
        floats[name] = float(v)
    if atol is not None and (isinstance(atol, bool) or not isinstance(atol, (int, float, np.floating)) or not 0 < atol < np.inf):
        raise ValueError(f"atol must be a finite number > 0 or None; got {atol!r}.")
    if isinstance(horizon_cap, bool) or not isinstance(horizon_cap, (int, float, np.floating)) or not 1 <= horizon_cap < np.inf:
        raise ValueError(f"horizon_cap must be a finite number >= 1; got {horizon_cap!r}.")
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be a diffrax solver (e.g. diffrax.Tsit5()); got {solver!r}.")
    cfg = _Config(n_save, floats["rtol"], None if atol is None else float(atol), floats["converge_rtol"],
                  max_steps, solver or diffrax.Tsit5())
    return cfg, floats["t_min_fraction"], float(horizon_cap)


def _start(params, objective, t_max, static, cfg, t_min_fraction):
    """Per-member start of a solve: (t0, t1, save grid, atol, initial loss gap, valid input)."""
    net0 = eqx.combine(params, static)
    valid = _tr.objective_valid(objective) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(params)])
    )
    objective = _tr.safe_objective(objective, valid)
    if t_max is None:
        t_max = jnp.where(valid, _tr.default_horizon(net0, objective), 1.0)
    dtype = jax.tree.leaves(params)[0].dtype
    t_max = jnp.asarray(t_max, dtype)
    ts = save_grid(t_max, cfg.n_save, t_min_fraction).astype(dtype)
    if cfg.atol is None:
        rms = jnp.stack([jnp.sqrt(jnp.mean(a**2)) for a in jax.tree.leaves(params)])
        atol = 1e-6 * jnp.maximum(jnp.min(rms), jnp.finfo(dtype).tiny)
    else:
        atol = jnp.asarray(cfg.atol, dtype)
    gap0 = _tr.loss_fn_for(static, objective)(params) - _tr.target_loss(net0, objective)
    return jnp.zeros((), dtype), t_max, ts, atol, gap0, valid


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
    rtol: float = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    converge_rtol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    solver: diffrax.AbstractSolver = eqx.field(static=True)


def _solve_one(params, static, objective, t0, t1, ts, atol, gap0, valid, cfg: _Config) -> Trajectory:
    """Integrate one member from `params` at t0 to t1, saving summaries at `ts` (clipped to
    [t0, t1]); stop when the loss gap falls below converge_rtol x `gap0`."""
    net0 = eqx.combine(params, static)
    objective = _tr.safe_objective(objective, valid)
    # The ODE state is the flat parameter vector: one array per RK stage op instead of one per
    # layer (fewer tiny XLA ops).
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

    def converged(t, y, args, **kwargs):
        return loss_fn(y) - l_star <= cfg.converge_rtol * gap0

    dtype = flat0.dtype  # the time dtype sets the state dtype (diffrax #349)
    t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=jnp.clip(ts, t0, t1), fn=summary), diffrax.SubSaveAt(t1=True)])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        cfg.solver,
        t0=t0,
        t1=t1,
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
    w_end, _, l_end = summary(t_end, final_params, None)
    w, w_dot, lss = fill_after_end(jnp.isfinite(sol.ts[0]), w, w_dot, lss, w_end, l_end)
    finite = jnp.all(jnp.isfinite(w)) & jnp.all(jnp.isfinite(lss)) & jnp.all(jnp.isfinite(final_params))
    status = run_status(
        invalid=~valid,
        non_finite=~finite,
        diverged=False,
        step_budget=sol.result == diffrax.RESULTS.max_steps_reached,
        not_converged=sol.result != diffrax.RESULTS.event_occurred,
    )
    nan = jnp.where(valid, 1.0, jnp.nan)  # an invalid member's summaries are NaN
    return Trajectory(
        ts=ts,
        weights=w * nan,
        weights_dot=w_dot * nan,
        loss=lss * nan,
        t_end=t_end,
        status=status,
        num_steps=sol.stats["num_steps"],
        final=eqx.combine(unravel(final_params), static),
        d_A=net0.d_A,
        method="flow",
        fusion_layer=net0.fusion_layer,
    )


class _Solve(eqx.Module):
    """The (vmapped, when `axes` is given) solve as a hashable callable with static
    configuration, so the single-device jit and the sharded path compile once per structure."""

    static: FusionDLN = eqx.field(static=True)
    cfg: _Config = eqx.field(static=True)
    axes: tuple | None = eqx.field(static=True)

    def __call__(self, params, objective, t0, t1, ts, atol, gap0, valid):
        def one(p, o, *rest):
            return _solve_one(p, self.static, o, *rest, self.cfg)

        if self.axes is None:
            return one(params, objective, t0, t1, ts, atol, gap0, valid)
        return eqx.filter_vmap(one, in_axes=self.axes)(params, objective, t0, t1, ts, atol, gap0, valid)


class _FirstSolve(eqx.Module):
    """Start values (`_start`) and the solve from t = 0 in one compiled computation, vmapped
    when `axes` is given; returns (trajectory, start values) for continuations."""

    static: FusionDLN = eqx.field(static=True)
    cfg: _Config = eqx.field(static=True)
    axes: tuple | None = eqx.field(static=True)
    t_min_fraction: float = eqx.field(static=True)

    def __call__(self, params, objective, t_max):
        def one(p, o, t):
            start = _start(p, o, t, self.static, self.cfg, self.t_min_fraction)
            return _solve_one(p, self.static, o, *start, self.cfg), start

        if self.axes is None:
            return one(params, objective, t_max)
        return eqx.filter_vmap(one, in_axes=self.axes)(params, objective, t_max)


@eqx.filter_jit
def _call_jit(fn, *args):
    return fn(*args)
