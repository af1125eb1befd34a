"""Gradient flow tau dW_l/dt = -dL/dW_l for every layer, integrated with diffrax, batched.

The theory's continuous-time limit of full-batch gradient descent (Zhang et al. 2024; docs/theory.md
§1: tau = 1/lr, so one unit of time here is 1/lr epochs). The vector field is the autodiff
gradient of the loss written through the statistics (`Statistics.loss`; no loop over samples)
or, for nonlinear networks, of the sample loss.

Each member has its own adaptive step size (`vmap` of a diffrax solve), stops at its own
convergence event (loss gap below `converge_rtol` x initial gap), and reports its own status;
saved output is only the effective weights, their derivative and the loss on a log-spaced grid.
The solve itself is the engine's (`multimodal_dln._solve`); this module writes one member's
problem and the start values.

Weight decay lambda (`weight_decay`, a scalar or one per member, traced; docs/theory.md §8): the
flow of J = L + lambda/2 ||theta||^2 over every weight, stopping once J - J* <= converge_rtol
(J(0) - J*), J* J's closed-form minimum (depth 1, or depth 2 with d_out = 1, late fusion with
scalar modalities; other networks raise); the saved `loss` is J. The default 0 is exactly the
plain flow. Pass the same lambda to `measure`.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike

from . import _compaction, _layer_rates, _training as _tr
from ._compaction import advance, pool_size_for, run_compacted, running, to_segment
from ._config import HORIZON_CAP, SolverConfig, check_run_options, default_atol, solver_config
from ._continuation import continue_unconverged
from ._dataset import Dataset
from ._memory import check_solve_memory
from ._network import FusionDLN
from ._sharding import resolve_mesh
from ._solve import (
    call,
    convergence_event,
    integrate_with,
    run_in_buckets,
    save_grid,
    saved_to_end,
    segment_status,
)
from ._statistics import Statistics
from ._trajectory import Trajectory
from ._validation import check_dtype

__all__ = ["gradient_flow", "save_grid", "HORIZON_CAP"]

_SOLVER_COPIES = 16  # state-sized arrays a Tsit5 step holds per member (memory estimate)


def gradient_flow(
    net: FusionDLN,
    objective: Statistics | Dataset,
    *,
    weight_decay: ArrayLike = 0.0,
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
    chunk_steps: int | None = None,
    pool_size: int | None = None,
    layer_lrs: ArrayLike | None = None,
) -> Trajectory:
    """Integrate gradient flow for one network or a batch of networks.

    **Arguments:**

    - `net`: a `FusionDLN`, or a batch of them (every array with a leading axis, e.g. built with
      `eqx.filter_vmap(FusionDLN.init ...)`).
    - `objective`: `Statistics` (linear networks), or a `Dataset` of samples (needed for ReLU).
      Either may be batched along the same leading axis as `net`, or shared.
    - `weight_decay`: lambda >= 0, scalar or per member: L2 on every weight (module docstring).
    - `t_max`: horizon (scalar or per member). Default: an estimate from the statistics and
      the initial scale (`_training.default_horizon`); members not converged by then continue
      from their final state, the horizon ~8x per round, up to `horizon_cap` (>= 1; 1: no
      continuation) x the estimate. A given `t_max` is kept (unconverged: `NOT_CONVERGED`).
    - `n_save`: save times: t = 0 and a log grid from `t_min_fraction` (in (0, 1)) x t_max to t_max.
    - `rtol`, `atol`: step-size controller tolerances; `atol` defaults to 1e-6 x the smallest
      initial RMS weight entry (near the weight scale it biases the escape from the saddle).
    - `converge_rtol`: a member stops once L - L* <= converge_rtol (L(0) - L*) (or J, J*).
    - `max_steps`: step budget per member and round; exceeding it gives `STEP_BUDGET`.
    - `solver`: a diffrax solver (default `Tsit5()`; `Kvaerno5()` for small stiff problems).
    - `dtype`: float32 or float64 (default: the network's); float32 limits how small an init
      the phase times stay accurate for.
    - `shard`: split a batch over devices (`multimodal_dln._sharding`): "auto" (all devices
      when there are several), False, or a 1-D `jax.sharding.Mesh` with axis "batch".
    - `buckets`: solve a batch in this many groups of members with similar predicted duration
      `cost` (default: the horizon estimate), one after another: a vmapped solve runs until
      its slowest member is done.
    - `chunk_steps`, `pool_size`: compaction instead (`multimodal_dln._compaction`): solve
      `pool_size` members at a time (default: a quarter of the batch, a power of two) in
      chunks of `chunk_steps` steps, finished members replaced by waiting ones between chunks
      (continuation rounds too).
      Same steps and saves as one shot, bit for bit; each pool size compiles once (~4 sizes);
      `max_steps` is checked between chunks. `benchmarks/` measures both schemes.
    - `layer_lrs`: per-layer learning rates eta_l, shape (L,) or (batch, L) (traced):
      tau dW_l/dt = -eta_l dL/dW_l, integrated as plain gradient flow of W_l / sqrt(eta_l) on
      inputs scaled by prod_l sqrt(eta_l) (`multimodal_dln._layer_rates`; docs/theory.md §9).

    **Returns:** a `Trajectory` (batched like the inputs) whose `status` says per member whether
    it converged and, if not, why (`multimodal_dln.Status`). Concrete invalid inputs raise a
    `ValueError` naming the member; members found invalid only inside a trace (e.g. NaN
    statistics from a vmapped constructor) get `INVALID_INPUT` while the rest are solved.
    """
    # per-layer rates: plain flow in rescaled coordinates, mapped back at the end
    net, objective, back = _layer_rates.rescaled(net, objective, layer_lrs, weight_decay)
    net, objective, batch, axes = _prepare(net, objective, dtype, weight_decay)
    cfg = solver_config(n_save, rtol, atol, converge_rtol, max_steps, solver)
    t_max, t_min_fraction, horizon_cap = check_run_options(
        t_max, batch, t_min_fraction, horizon_cap, buckets, chunk_steps, pool_size
    )
    params, static = eqx.partition(net, eqx.is_array)
    mesh = resolve_mesh(shard, batch)
    args = (params, objective, _horizon_arg(t_max, batch, params), jnp.asarray(t_min_fraction))
    first_axes = None if batch is None else axes + (0, None)
    traj, start = _first_solve(
        static, cfg, args, first_axes, batch, mesh, buckets, cost, chunk_steps, pool_size
    )
    more = (args[:2] + start, None if batch is None else axes + (0,) * 6)
    rounds = (t_max, t_min_fraction, horizon_cap, (chunk_steps, pool_size))
    return back(_continue(static, cfg, mesh, more, *rounds, traj))


def _continue(static, cfg, mesh, more, t_max, t_min_fraction, horizon_cap, compact, traj):
    """Continuation rounds for the members not converged by their horizon (`more`: the solve's
    arguments from the start values, and their vmap axes); compacted like the first solve
    when `compact` = (chunk_steps, pool_size) gives chunk_steps."""

    def run_more(args, axes):  # a continuation round from given start values
        if compact[0] is None or axes is None:
            return call(_Solve(static, cfg), args, axes, mesh)
        batch = args[2].shape[0]  # t0 per member
        pool = pool_size_for(compact[1], batch)
        begin = _BeginAt(static, cfg)
        return _run_compacted(static, cfg, compact[0], pool, args, axes, batch, mesh, begin)[0]

    return continue_unconverged(run_more, *more, t_max, t_min_fraction, horizon_cap, traj)


def _prepare(net, objective, dtype, weight_decay):
    """Validated (net, objective) cast to `dtype`, the batch size and their vmap axes; raises
    when the solver stages of the batch would not fit in memory. With weight decay the
    objective is `_training.Regularized`."""
    net, objective, batch, net_axis, obj_axis = _tr.prepare(net, objective, weight_decay)
    if dtype is not None:
        dtype = check_dtype(dtype)
        net, objective = (
            jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)
            for tree in (net, objective)
        )
    itemsize = jnp.dtype(jax.tree.leaves(eqx.filter(net, eqx.is_array))[0].dtype).itemsize
    check_solve_memory(
        batch or 1,
        _tr.n_params_per_member(net, net_axis),
        itemsize,
        copies=_SOLVER_COPIES,
        what="for the solver stages",
    )
    return net, objective, batch, (net_axis, obj_axis)


def _first_solve(static, cfg, args, axes, batch, mesh, buckets, cost, chunk_steps, pool_size):
    """The first solve of every member (one shot, in buckets or compacted); returns
    (trajectory, start values for continuations)."""
    if batch is not None and chunk_steps is not None:
        pool = pool_size_for(pool_size, batch)
        return _run_compacted(static, cfg, chunk_steps, pool, args, axes, batch, mesh)
    if batch is not None and buckets > 1 and cost is None:  # default: the horizon estimate
        net = eqx.combine(args[0], static)
        cost = eqx.filter_vmap(_tr.default_horizon, in_axes=axes[:2])(net, args[1])
    more_axes = None if axes is None else axes[:2] + (0,) * 6

    def first(args):  # start values, then the continuation rounds' own compiled solve
        start = call(_Start(static, cfg), args, axes, mesh)
        return call(_Solve(static, cfg), args[:2] + start, more_axes, mesh), start

    if batch is None or buckets == 1:
        return first(args)
    return run_in_buckets(first, args, axes, batch, buckets, cost)


def _horizon_arg(t_max, batch, params):
    """The horizon per member as the solve's traced argument, in the dtype of `params`: NaN
    where it is to be estimated (`t_max` None), a given scalar broadcast; shape () without a
    batch, else (batch,). Traced like t_min_fraction, so estimated and given horizons and any
    save-grid start share one compiled solve (same dtype, neither weak-typed)."""
    shape, dtype = (() if batch is None else (batch,)), jax.tree.leaves(params)[0].dtype
    if t_max is None:
        return jnp.full(shape, jnp.nan, dtype=dtype)
    t_max = jnp.asarray(t_max, dtype)
    return jnp.broadcast_to(t_max, shape) if t_max.ndim == 0 else t_max.reshape(shape)


def _start(params, objective, t_max, static, cfg: SolverConfig, t_min_fraction):
    """Per-member start of a solve: (t0, t1, save grid, atol, initial loss gap, valid input);
    `t_max` NaN means the horizon is estimated (`_training.default_horizon`)."""
    net0 = eqx.combine(params, static)
    valid = _tr.member_valid(params, objective)
    objective = _tr.safe_objective(objective, valid)
    estimate = jnp.where(valid, _tr.default_horizon(net0, objective), 1.0)
    t_max = jnp.where(jnp.isnan(t_max), estimate, t_max)  # NaN: no horizon given
    dtype = jax.tree.leaves(params)[0].dtype
    t_max = jnp.asarray(t_max, dtype)
    ts = save_grid(t_max, cfg.n_save, t_min_fraction).astype(dtype)
    atol = default_atol(params) if cfg.atol is None else jnp.asarray(cfg.atol, dtype)
    gap0 = _tr.loss_fn_for(static, objective)(params) - _tr.target_loss(net0, objective)
    return jnp.zeros((), dtype), t_max, ts, atol, gap0, valid


class _Problem(NamedTuple):
    """One member's ODE: the flat start `y0`, `unravel` to the network's arrays, the vector
    field, the saved summary (effective weights, their derivative, loss) and the event."""

    y0: Any
    unravel: Any
    field: Any
    summary: Any
    event: Any
    weight_decay: Any  # lambda of a `Regularized` objective, else None


def _problem(params, static, objective, gap0, valid, cfg: SolverConfig) -> _Problem:
    """Gradient flow of one member on its flat parameter vector; stops when the loss gap falls
    below converge_rtol x `gap0`."""
    net0 = eqx.combine(params, static)
    objective = _tr.safe_objective(objective, valid)
    flat0, unravel, loss_fn, readout = _tr.flat_problem(params, static, objective)
    grad_fn = jax.grad(loss_fn)

    def vector_field(t, p, args):
        return -grad_fn(p)

    def summary(t, p, args):
        w, w_dot = jax.jvp(readout, (p,), (vector_field(t, p, args),))
        return w, w_dot, loss_fn(p)

    event = convergence_event(loss_fn, _tr.target_loss(net0, objective), gap0, cfg.converge_rtol)
    return _Problem(
        flat0, unravel, vector_field, summary, event, _tr.split_decay(objective)[1]
    )


def _solve_one(
    params, static, objective, t0, t1, ts, atol, gap0, valid, cfg: SolverConfig
) -> Trajectory:
    """Integrate one member from `params` at t0 to t1, saving summaries at `ts` (clipped to
    [t0, t1]); stop when the loss gap falls below converge_rtol x `gap0`."""
    prob = _problem(params, static, objective, gap0, valid, cfg)
    seg = integrate_with(
        cfg, prob.field, prob.y0, t0, t1, ts, prob.summary, atol=atol, event=prob.event
    )
    return _trajectory(seg, prob, params, static, ts, valid)


def _trajectory(seg, prob: _Problem, params, static, ts, valid) -> Trajectory:
    """A member's `Trajectory` from its finished solve `seg`."""
    net0 = eqx.combine(params, static)
    w, w_dot, lss = saved_to_end(seg, prob.summary)
    finite = (
        jnp.all(jnp.isfinite(w)) & jnp.all(jnp.isfinite(lss)) & jnp.all(jnp.isfinite(seg.y_end))
    )
    nan = jnp.where(valid, 1.0, jnp.nan)  # an invalid member's summaries are NaN
    return Trajectory(
        ts=ts,
        weights=w * nan,
        weights_dot=w_dot * nan,
        loss=lss * nan,
        t_end=seg.t_end,
        status=segment_status(seg, valid=valid, finite=finite),
        num_steps=seg.num_steps,
        final=eqx.combine(prob.unravel(seg.y_end), static),
        d_A=net0.d_A,
        method="flow",
        fusion_layer=net0.fusion_layer,
        weight_decay=prob.weight_decay,
    )


class _Member(eqx.Module):
    """A callable on one member with the network's static part and the solver configuration
    as static fields (hashable for `_solve.call`; storable, `_exported`)."""

    exportable: ClassVar[bool] = True
    static: FusionDLN = eqx.field(static=True)
    cfg: SolverConfig = eqx.field(static=True)


class _Solve(_Member):
    """One member's solve from given start values (a continuation round), as a hashable
    callable with static configuration for `_solve.call`."""

    def __call__(self, params, objective, t0, t1, ts, atol, gap0, valid):
        return _solve_one(params, self.static, objective, t0, t1, ts, atol, gap0, valid, self.cfg)


class _Begin(_Member):
    """Start values and the `Resumable` state before the first chunk of one member's
    compacted solve (`multimodal_dln._compaction`)."""

    def __call__(self, params, objective, t_max, t_min_fraction):
        start = _start(params, objective, t_max, self.static, self.cfg, t_min_fraction)
        return start, _begin_state(params, objective, start, self.static, self.cfg)


class _BeginAt(_Member):
    """`_Begin` of a continuation round: the start values are given (`_continuation`)."""

    def __call__(self, params, objective, t0, t1, ts, atol, gap0, valid):
        start = (t0, t1, ts, atol, gap0, valid)
        return start, _begin_state(params, objective, start, self.static, self.cfg)


def _begin_state(params, objective, start, static, cfg: SolverConfig):
    t0, t1, ts, atol, gap0, valid = start
    prob = _problem(params, static, objective, gap0, valid, cfg)
    return _compaction.start(
        prob.field, prob.y0, t0, t1, ts, prob.summary, solver=cfg.solver, rtol=cfg.rtol,
        atol=atol,
    )  # fmt: skip


class _Advance(_Member):
    """One chunk of at most `steps` steps of one member's compacted solve."""

    steps: int = eqx.field(static=True)

    def __call__(self, params, objective, start, state):
        t0, t1, ts, atol, gap0, valid = start
        prob = _problem(params, self.static, objective, gap0, valid, self.cfg)
        cfg = self.cfg
        return advance(
            prob.field, state, t1, ts, prob.summary, solver=cfg.solver, rtol=cfg.rtol,
            atol=atol, steps=self.steps, max_steps=cfg.max_steps, event=prob.event,
        )  # fmt: skip


class _Finish(_Member):
    """One member's `Trajectory` from its finished compacted solve."""

    def __call__(self, params, objective, start, state):
        t0, t1, ts, atol, gap0, valid = start
        prob = _problem(params, self.static, objective, gap0, valid, self.cfg)
        return _trajectory(to_segment(state), prob, params, self.static, ts, valid)


def _run_compacted(static, cfg, steps, pool, args, axes, batch, mesh, begin=None):
    """A solve of every member in chunks of at most `steps` steps, finished members dropped
    between chunks (`_compaction.run_compacted`); returns (trajectory, start values). `begin`:
    `_Begin` (the first solve, the default) or `_BeginAt` (a continuation round)."""
    begin = _Begin(static, cfg) if begin is None else begin
    start, state = call(begin, args, axes, mesh)
    inputs, in_axes = args[:2], axes[:2]
    member_axes = in_axes + (0, 0)
    advance_one = _Advance(static, cfg, steps)
    state = run_compacted(
        lambda sub, st: call(advance_one, (*sub[:2], sub[2], st), member_axes, mesh),
        lambda st: running(st, cfg.max_steps),
        (*inputs, start),
        in_axes + (0,),
        state,
        batch,
        pool,
    )
    traj = call(_Finish(static, cfg), (*inputs, start, state), member_axes, mesh)
    return traj, start


class _Start(_Member):
    """One member's start values (`_start`). The first solve then runs the same compiled
    `_Solve` as a continuation round, so a continuation of a batch of the same size compiles
    nothing new (a continuation used to compile a second, larger program per structure)."""

    def __call__(self, params, objective, t_max, t_min_fraction):
        return _start(params, objective, t_max, self.static, self.cfg, t_min_fraction)
