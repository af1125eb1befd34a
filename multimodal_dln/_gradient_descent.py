"""Full-batch gradient descent with optax: the discrete counterpart of gradient flow.

theta_{k+1} = theta_k - lr grad L(theta_k) (`optax.sgd`, no momentum), on the population loss
(statistics) or on a finite sample. Time is reported in gradient-flow units t = k x lr
(digest 1.3: tau = 1/lr), so GD and GF trajectories are directly comparable; GD -> GF as
lr -> 0 with error O(lr). The authors' lr = 0.04 is not small for strong modalities: a mode
with growth rate 2 s grows by (1 + 2 s lr) per step instead of exp(2 s lr), so with s_A = 5
(toy ratio 2, rho 0.5) GD learns A ~9 % later than gradient flow and the time ratio comes out
~4.6 instead of ~5.0 (measured; see docs/reproduction.md).

Batched with `vmap` over networks, statistics and learning rates, the optimizer state batched
alongside (stack notes 2.2). Summaries are saved at log-spaced steps; members stop at
convergence; a member whose loss becomes non-finite or grows beyond `divergence_factor` x its
initial loss is marked diverged and frozen (its flag `solver_ok` is False).
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import ArrayLike

from . import _training as _tr
from ._sharding import resolve_mesh, run_sharded
from ._validation import check_positive, check_positive_int, check_solve_memory
from ._dataset import Dataset
from ._gradient_flow import HORIZON_CAP
from ._network import FusionDLN
from ._statistics import Statistics
from ._status import Status
from ._trajectory import Trajectory, run_status

__all__ = ["gradient_descent", "stable_lr_estimate"]


def stable_lr_estimate(net: FusionDLN, stats: Statistics) -> jax.Array:
    """lr_max ~ 2 / lambda_max(Hessian at the solution) for a balanced deep linear network,

        lambda_max ~ L lambda_max(Sigma_xx) ||W*||^{2 - 2/L}

    (each of the L balanced layers contributes lambda_max(Sigma) ||W*||^{2(L-1)/L}). An estimate
    for the balanced minimum: below it GD is stable near the solution; somewhat above it GD may
    still converge to a flatter, unbalanced minimum; far above it (measured: 5x for a 3-layer toy
    net) GD diverges.
    """
    L = net.depth
    lam = jnp.linalg.eigvalsh(stats.sigma_xx)[..., -1]
    w = jnp.linalg.norm(stats.optimal_weights(), axis=(-2, -1))
    return 2.0 / (L * lam * jnp.maximum(w, 1e-12) ** (2.0 - 2.0 / L))


def gradient_descent(
    net: FusionDLN,
    objective: Statistics | Dataset,
    *,
    lr: ArrayLike,
    n_steps: int | None = None,
    n_save: int = 512,
    converge_rtol: float = 1e-6,
    divergence_factor: float = 1e6,
    on_divergence: str = "warn",
    horizon_cap: float = HORIZON_CAP,
    shard="auto",
) -> Trajectory:
    """Run full-batch GD for one network or a batch (same batching rules as `gradient_flow`).

    **Arguments:**

    - `lr`: learning rate, a scalar or one per member (traced: no recompile per value).
    - `n_steps`: maximum number of steps. Default: the gradient-flow horizon estimate / lr
      (at most 10^6), and members not converged by then are run again with 8x the steps,
      up to `horizon_cap` x the default. An explicit `n_steps` is kept as given.
    - `n_save`: number of log-spaced steps at which summaries are saved (early ones may repeat).
    - `converge_rtol`: stop once L - L* <= converge_rtol (L(0) - L*).
    - `divergence_factor`: a loss above this multiple of the initial loss (or non-finite) marks
      the member diverged.
    - `on_divergence`: "warn" (default), "raise" (ValueError naming lr and the stable range) or
      "ignore"; divergence is always reported per member as `Status.DIVERGED`.
    - `shard`: split a batch over devices, as in `gradient_flow`.

    **Returns:** a `Trajectory` with `ts` = steps x lr and a `status` per member.
    """
    if on_divergence not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_divergence must be 'warn', 'raise' or 'ignore'; got {on_divergence!r}.")
    net, objective, batch, net_axis, obj_axis = _tr.prepare(net, objective)
    lr = check_positive("lr (learning rate)", jnp.asarray(lr, dtype=float))
    lr_axis = 0 if lr.ndim == 1 else None
    if lr.ndim > 1 or (lr_axis == 0 and batch is not None and lr.shape[0] != batch):
        raise ValueError(f"lr must be a scalar or have one entry per member; got shape {lr.shape}.")
    if lr_axis == 0 and batch is None:
        raise ValueError("a vector of learning rates needs a batch of networks or statistics.")
    n_save = check_positive_int("n_save", n_save)
    for name, v in (("converge_rtol", converge_rtol),):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0 < v < 1:
            raise ValueError(f"{name} must be a number in the open interval (0, 1); got {v!r}.")
    if isinstance(divergence_factor, bool) or not isinstance(divergence_factor, (int, float, np.floating)) or not divergence_factor > 1:
        raise ValueError(f"divergence_factor must be a number > 1; got {divergence_factor!r}.")
    itemsize = jnp.dtype(jax.tree.leaves(eqx.filter(net, eqx.is_array))[0].dtype).itemsize
    check_solve_memory(batch or 1, _tr.n_params_per_member(net, net_axis), itemsize, copies=6,
                       what="for gradient descent")
    auto_steps = n_steps is None
    if auto_steps:
        horizon = _tr.default_horizon
        h = eqx.filter_vmap(horizon, in_axes=(net_axis, obj_axis))(net, objective) if batch else horizon(net, objective)
        n_steps = int(min(1e6, math.ceil(float(jnp.nanmax(h / lr)))))
    n_steps = check_positive_int("n_steps", n_steps)
    params, static = eqx.partition(net, eqx.is_array)
    cfg = _GDConfig(float(converge_rtol), float(divergence_factor))
    mesh = resolve_mesh(shard, batch)

    def run(params, objective, lr, n_steps, axes):
        steps = _save_steps(n_steps, n_save)
        if batch is None:
            return _gd_jit(params, static, objective, lr, steps, cfg)
        fn = _BatchGD(static, cfg, axes + (None,))
        args = (params, objective, lr, steps)
        size = jax.tree.leaves(args[axes.index(0)])[0].shape[0]
        return _call_jit(fn, *args) if mesh is None else run_sharded(fn, args, fn.axes, size, mesh)

    traj = run(params, objective, lr, n_steps, (net_axis, obj_axis, lr_axis))
    if isinstance(traj.status, jax.core.Tracer):
        return traj  # under the caller's jit: statuses cannot be read here
    if auto_steps:
        for factor in (8, 64):
            if factor > horizon_cap:
                break
            traj = _rerun_unconverged(run, traj, params, objective, lr, n_steps * factor,
                                      (net_axis, obj_axis, lr_axis))
    if on_divergence != "ignore":
        _report_divergence(traj, net, objective, lr, on_divergence)
    return traj


def _save_steps(n_steps: int, n_save: int):
    """Exactly n_save log-spaced save steps (repeats at the start are empty intervals), so the
    output shape depends on n_save only: a new n_steps does not recompile."""
    steps = np.round(np.geomspace(1, n_steps, max(n_save - 1, 2))).astype(np.int64)
    return jnp.asarray(np.concatenate([[0], steps]))


def _rerun_unconverged(run, traj, params, objective, lr, n_steps, axes):
    """Run the members that have not converged again with a larger step budget (GD is
    deterministic, so their start is repeated exactly); others are kept."""
    todo = np.flatnonzero(np.atleast_1d(np.asarray(traj.status)) == Status.NOT_CONVERGED)
    if todo.size == 0:
        return traj
    if traj.ts.ndim == 1:
        return run(params, objective, lr, n_steps, axes)
    size = 1 << int(np.ceil(np.log2(todo.size)))  # power of two: few distinct shapes
    idx = jnp.asarray(np.concatenate([todo, np.full(size - todo.size, todo[-1])]))
    take = lambda tree, ax: tree if ax is None else jax.tree.map(lambda a: a[idx], tree)  # noqa: E731
    net_axis, obj_axis, lr_axis = axes
    sub = run(take(params, net_axis), take(objective, obj_axis), take(lr, lr_axis), n_steps, axes)
    real = jnp.asarray(todo)
    return jax.tree.map(lambda a, b: a.at[real].set(b[: todo.size]) if eqx.is_array(a) else a, traj, sub)


def _report_divergence(traj, net, objective, lr, on_divergence):
    diverged = np.atleast_1d(np.asarray(traj.status) == Status.DIVERGED)
    if not diverged.any():
        return
    est = np.atleast_1d(np.asarray(stable_lr_estimate(net, _tr.statistics_of(objective))))
    lrs = np.broadcast_to(np.atleast_1d(np.asarray(lr)), diverged.shape)
    idx = np.flatnonzero(diverged)
    msg = (
        f"gradient descent diverged for {idx.size} of {diverged.size} member(s) "
        f"(indices {idx[:10].tolist()}{'...' if idx.size > 10 else ''}) with lr = "
        f"{np.unique(lrs[idx])[:5].tolist()}; lr must be below the stability limit, "
        f"estimated here as lr < {float(np.nanmin(est)):.3g} (2 / lambda_max of the loss "
        "Hessian at the solution). Their status is DIVERGED and their phase times NaN."
    )
    if on_divergence == "raise":
        raise ValueError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


class _GDConfig(eqx.Module):
    converge_rtol: float = eqx.field(static=True)
    divergence_factor: float = eqx.field(static=True)


def _gd_one(params, static, objective, lr, save_steps, cfg: _GDConfig) -> Trajectory:
    net0 = eqx.combine(params, static)
    valid = _tr.objective_valid(objective) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(params)])
    )
    objective = _tr.safe_objective(objective, valid)
    flat0, unravel = jax.flatten_util.ravel_pytree(params)
    tree_loss = _tr.loss_fn_for(static, objective)

    def loss_fn(flat):
        return tree_loss(unravel(flat))

    value_and_grad = jax.value_and_grad(loss_fn)
    opt = optax.sgd(lr)
    opt_state0 = opt.init(flat0)

    def readout(p):
        return _tr.readout(eqx.combine(unravel(p), static), objective)

    def summary(p):
        lval, g = value_and_grad(p)
        w = readout(p)
        w_next = readout(p - lr * g)  # what the next GD step does, per unit of GF time
        return w, (w_next - w) / lr, lval

    l_star = _tr.target_loss(net0, objective)
    w0, wd0, l0 = summary(flat0)
    gap0 = l0 - l_star
    n = save_steps.shape[0]
    bufs = (
        jnp.zeros((n,) + w0.shape, w0.dtype).at[0].set(w0),
        jnp.zeros((n,) + w0.shape, w0.dtype).at[0].set(wd0),
        jnp.zeros((n,), l0.dtype).at[0].set(l0),
    )

    def gd_step(_, carry):
        p, s = carry
        g = jax.grad(loss_fn)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s

    def cond(carry):
        i, _, _, _, active, _ = carry
        return (i < n - 1) & active

    def body(carry):
        i, p, s, (bw, bwd, bl), _, _ = carry
        p_new, s_new = jax.lax.fori_loop(save_steps[i], save_steps[i + 1], gd_step, (p, s))
        w, wd, lval = summary(p_new)
        bad = ~jnp.isfinite(lval) | (lval > cfg.divergence_factor * jnp.maximum(l0, 1e-300))
        done = lval - l_star <= cfg.converge_rtol * gap0
        # A diverged member keeps its last finite state.
        p_new = jnp.where(bad, p, p_new)
        bufs = (bw.at[i + 1].set(w), bwd.at[i + 1].set(wd), bl.at[i + 1].set(lval))
        return i + 1, p_new, s_new, bufs, ~(bad | done), bad

    init = (jnp.asarray(0), flat0, opt_state0, bufs, jnp.asarray(True), jnp.asarray(False))
    i_end, p_end, _, (bw, bwd, bl), _, diverged = jax.lax.while_loop(cond, body, init)
    filled = jnp.arange(n) <= i_end
    bw = jnp.where(filled[:, None, None], bw, bw[i_end])
    bwd = jnp.where(filled[:, None, None], bwd, 0.0)
    bl = jnp.where(filled, bl, bl[i_end])
    converged = (bl[i_end] - l_star <= cfg.converge_rtol * gap0) & ~diverged
    status = run_status(
        invalid=~valid, non_finite=False, diverged=diverged, step_budget=False, not_converged=~converged
    )
    nan = jnp.where(valid, 1.0, jnp.nan)  # an invalid member's summaries are NaN
    return Trajectory(
        ts=save_steps * lr,
        weights=bw * nan,
        weights_dot=bwd * nan,
        loss=bl * nan,
        t_end=save_steps[i_end] * lr,
        status=status,
        num_steps=save_steps[i_end],
        final=eqx.combine(unravel(p_end), static),
        d_A=net0.d_A,
        method="gd",
        fusion_layer=net0.fusion_layer,
    )


@eqx.filter_jit
def _gd_jit(params, static, objective, lr, save_steps, cfg):
    return _gd_one(params, static, objective, lr, save_steps, cfg)


class _BatchGD(eqx.Module):
    """The vmapped GD loop as a hashable callable (static configuration): compiled once per
    structure, on one device or sharded over several."""

    static: FusionDLN = eqx.field(static=True)
    cfg: _GDConfig = eqx.field(static=True)
    axes: tuple = eqx.field(static=True)

    def __call__(self, params, objective, lr, save_steps):
        fn = eqx.filter_vmap(
            lambda p, o, r, s: _gd_one(p, self.static, o, r, s, self.cfg), in_axes=self.axes
        )
        return fn(params, objective, lr, save_steps)


@eqx.filter_jit
def _call_jit(fn, *args):
    return fn(*args)
