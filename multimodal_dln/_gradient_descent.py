"""Full-batch gradient descent with optax: the discrete counterpart of gradient flow.

theta_{k+1} = theta_k - lr grad L(theta_k) (`optax.sgd`, no momentum), on the population loss
(statistics) or on a finite sample. Time is reported in gradient-flow units t = k x lr
(Zhang et al. 2024; docs/theory.md §1: tau = 1/lr), so GD and GF trajectories are directly
comparable; GD -> GF as lr -> 0 with error O(lr). The authors' lr (`_constants.AUTHORS_LR`,
0.04) is not small for strong modalities: a mode
with growth rate 2 s grows by (1 + 2 s lr) per step instead of exp(2 s lr), so with s_A = 5
(toy ratio 2, rho 0.5) GD learns A ~9 % later than gradient flow and the time ratio comes out
~4.6 instead of ~5.0 (measured; see docs/reproduction.md).

Minibatch SGD (`batch_size` b < n on a `Dataset`, `key` per member or shared): step k uses b
samples of a per-epoch shuffle (`multimodal_dln._minibatch`; docs/theory.md §10); the saved
summaries, convergence and divergence use the loss on all n samples. b = n is full-batch GD.

Batched with `vmap` over networks, statistics and learning rates, the optimizer state batched
alongside (one `optax.sgd` state per member). Summaries are saved at log-spaced steps; members
stop at convergence; a member whose loss becomes non-finite or grows beyond `divergence_factor`
x its initial loss is marked diverged and frozen (its flag `solver_ok` is False).

Weight decay lambda (`weight_decay`, a scalar or one per member, traced; docs/theory.md §8):
theta_{k+1} = theta_k - lr (grad L + lambda theta_k), i.e. GD on J = L + lambda/2 ||theta||^2,
converged once J - J* <= converge_rtol (J(0) - J*) with J* J's closed-form minimum (the networks
of `gradient_flow`'s weight decay); the saved `loss` is J. The default 0 is exactly plain GD.
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Key

from . import _linalg, _training as _tr
from ._config import HORIZON_CAP
from ._dataset import Dataset
from ._memory import check_solve_memory
from ._minibatch import fori_minibatches, take
from ._network import FusionDLN
from ._sharding import resolve_mesh
from ._solve import call, pad_members, scatter_members, take_members, unconverged_members
from ._statistics import Statistics
from ._status import Status
from ._trajectory import Trajectory, fill_after_end, run_status
from ._validation import (
    check_option_min,
    check_option_open,
    check_positive,
    check_positive_int,
)

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
    lam = _linalg.eigvalsh(stats.sigma_xx)[..., -1]
    w = jnp.linalg.norm(stats.optimal_weights(), axis=(-2, -1))
    return 2.0 / (L * lam * jnp.maximum(w, 1e-12) ** (2.0 - 2.0 / L))


def gradient_descent(
    net: FusionDLN,
    objective: Statistics | Dataset,
    *,
    lr: ArrayLike,
    weight_decay: ArrayLike = 0.0,
    n_steps: int | None = None,
    n_save: int = 512,
    converge_rtol: float = 1e-6,
    divergence_factor: float = 1e6,
    on_divergence: str = "warn",
    horizon_cap: float = HORIZON_CAP,
    batch_size: int | None = None,
    key: Key[Array, "*members"] | None = None,
    shard="auto",
) -> Trajectory:
    """Run full-batch GD for one network or a batch (same batching rules as `gradient_flow`).

    **Arguments:**

    - `lr`: learning rate, a scalar or one per member (traced: no recompile per value).
    - `weight_decay`: lambda >= 0, scalar or per member: L2 on every weight (module docstring).
    - `n_steps`: maximum number of steps. Default: the gradient-flow horizon estimate / lr
      rounded up to a power of two (at most 2^20, so batches of similar horizons reuse one
      compiled loop), and members not converged by then are run again with 8x the steps,
      up to `horizon_cap` x the default. An explicit `n_steps` is kept as given.
    - `n_save`: number of log-spaced steps at which summaries are saved (early ones may repeat).
    - `converge_rtol`: stop once L - L* <= converge_rtol (L(0) - L*) (with weight decay: J, J*).
    - `divergence_factor`: a loss above this multiple of the initial one (or non-finite) diverges.
    - `on_divergence`: "warn" (default), "raise" (ValueError naming lr and the stable range) or
      "ignore"; divergence is always `Status.DIVERGED`. `shard`: as in `gradient_flow`.
    - `batch_size`: minibatch SGD with b samples per step (1 <= b <= n; the objective must be a
      `Dataset`); None: full batch. `key`: the minibatch draws (`multimodal_dln._minibatch`),
      one PRNG key shared by every member or one per member (shape `(batch,)`, e.g. seeds
      vmapped with `jax.random.split`); needed exactly when `batch_size` is given.

    **Returns:** a `Trajectory` with `ts` = steps x lr and a `status` per member (`method` "gd",
    or "sgd" with minibatches).
    """
    if on_divergence not in ("warn", "raise", "ignore"):
        raise ValueError(
            f"on_divergence must be 'warn', 'raise' or 'ignore'; got {on_divergence!r}."
        )
    net, objective, batch, net_axis, obj_axis = _tr.prepare(net, objective, weight_decay)
    lr, lr_axis = _check_lr(lr, batch)
    batch_size, key, key_axis = _check_minibatch(batch_size, key, objective, batch)
    n_save = check_positive_int("n_save", n_save)
    cfg = _GDConfig(
        check_option_open("converge_rtol", converge_rtol, 0.0, 1.0),
        check_option_min("divergence_factor", divergence_factor, 1.0, strict=True, finite=False),
        batch_size,
    )
    itemsize = jnp.dtype(jax.tree.leaves(eqx.filter(net, eqx.is_array))[0].dtype).itemsize
    n_params = _tr.n_params_per_member(net, net_axis)
    check_solve_memory(batch or 1, n_params, itemsize, copies=6, what="for gradient descent")
    auto_steps = n_steps is None
    if auto_steps:
        n_steps = _default_steps(net, objective, lr, batch, (net_axis, obj_axis))
    n_steps = check_positive_int("n_steps", n_steps)
    params, static = eqx.partition(net, eqx.is_array)
    member, mesh = _GD(static, cfg), resolve_mesh(shard, batch)

    def run(members, n_steps, axes):  # members: (params, objective, lr, key)
        args = members + (_save_steps(n_steps, n_save),)
        return call(member, args, None if batch is None else axes + (None,), mesh)

    members, axes = (params, objective, lr, key), (net_axis, obj_axis, lr_axis, key_axis)
    traj = run(members, n_steps, axes)
    if isinstance(traj.status, jax.core.Tracer):
        return traj  # under the caller's jit: statuses cannot be read here
    if auto_steps:
        for factor in (8, 64):
            if factor > horizon_cap:
                break
            traj = _rerun_unconverged(run, traj, members, n_steps * factor, axes)
    if on_divergence != "ignore":
        _report_divergence(traj, net, objective, lr, on_divergence)
    return traj


def _default_steps(net, objective, lr, batch, axes) -> int:
    """The gradient-flow horizon estimate / lr of the slowest member, as a power of two."""
    horizon = _tr.default_horizon
    h = eqx.filter_vmap(horizon, in_axes=axes)(net, objective) if batch else horizon(net, objective)
    return pow2_steps(float(jnp.nanmax(h / lr)))


def _check_lr(lr, batch):
    """The learning rate(s), > 0 and finite: a scalar, or one per member of a batch."""
    lr = check_positive("lr (learning rate)", jnp.asarray(lr, dtype=float))
    lr_axis = 0 if lr.ndim == 1 else None
    if lr.ndim > 1 or (lr_axis == 0 and batch is not None and lr.shape[0] != batch):
        raise ValueError(f"lr must be a scalar or have one entry per member; got shape {lr.shape}.")
    if lr_axis == 0 and batch is None:
        raise ValueError("a vector of learning rates needs a batch of networks or statistics.")
    return lr, lr_axis


def _check_minibatch(batch_size, key, objective, batch):
    """(batch_size, key, key's vmap axis): None, None, None for full-batch GD; else b in
    [1, n] on a `Dataset` objective and a typed PRNG key, shared or one per member."""
    if batch_size is None:
        if key is not None:
            raise ValueError("key is used for minibatches only; pass batch_size too (or no key).")
        return None, None, None
    data, _ = _tr.split_decay(objective)
    if not isinstance(data, Dataset):
        raise ValueError(
            "batch_size (minibatch SGD) needs a Dataset of samples as the objective; got "
            f"{type(data).__name__} (draw samples with multimodal_dln.sample(key, stats, n))."
        )
    b = check_positive_int("batch_size", batch_size)
    if b > data.n:
        raise ValueError(f"batch_size must be at most the number of samples {data.n}; got {b}.")
    if key is None:
        raise ValueError("batch_size needs key= (a PRNG key, or one per member) for minibatches.")
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(
            "key must be a typed PRNG key (jax.random.key(seed), or jax.random.split of one); "
            f"got {type(key).__name__} of dtype {getattr(key, 'dtype', None)}."
        )
    if key.ndim > 1 or (key.ndim == 1 and key.shape[0] != (batch or 0)):
        raise ValueError(
            f"key must be one key or one per member ({batch}); got shape {key.shape}."
        )
    return b, key, (0 if key.ndim == 1 else None)


def _save_steps(n_steps: int, n_save: int):
    """Exactly n_save log-spaced save steps (repeats at the start are empty intervals), so the
    output shape depends on n_save only: a new n_steps does not recompile."""
    steps = np.round(np.geomspace(1, n_steps, max(n_save - 1, 2))).astype(np.int64)
    return jnp.asarray(np.concatenate([[0], steps]))


def _rerun_unconverged(run, traj, members, n_steps, axes):
    """Run the members that have not converged again with a larger step budget (GD, and SGD
    for a given key, is deterministic, so their start is repeated exactly); others are kept."""
    todo = unconverged_members(traj.status)
    if todo.size == 0:
        return traj
    if traj.ts.ndim == 1:
        return run(members, n_steps, axes)
    idx = pad_members(todo, traj.ts.shape[0])  # a small batch: its own compiled loop
    sub = run(
        tuple(take_members(a, idx, ax) for a, ax in zip(members, axes, strict=True)), n_steps, axes
    )
    return scatter_members(traj, sub, todo)


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
    batch_size: int | None = eqx.field(static=True, default=None)  # None: full batch


def _minibatch_loss(params, static, objective, idx):
    """The loss an SGD step descends (on the flat parameters): on the samples `idx` of the
    objective (`_minibatch.minibatch_indices`; weight decay kept)."""
    data, lam = _tr.split_decay(objective)
    sub = take(data, idx)
    return _tr.flat_problem(params, static, sub if lam is None else _tr.Regularized(sub, lam))[2]


def _steps(lo, hi, carry, step, loss_fn, params, static, objective, key, b):
    """GD steps lo, ..., hi - 1 from `carry`; with minibatches of b < n samples each step's
    loss is on its minibatch (each epoch's shuffle drawn once, `_minibatch.fori_minibatches`)."""
    n = _tr.split_decay(objective)[0].n if b is not None else None
    if b is None or b == n:  # full batch (b = n: the same steps, no shuffle drawn)
        return jax.lax.fori_loop(lo, hi, lambda k, c: step(loss_fn, c), carry)

    def minibatch_step(idx, c):
        return step(_minibatch_loss(params, static, objective, idx), c)

    return fori_minibatches(lo, hi, n, b, key, minibatch_step, carry)


def _gd_one(params, static, objective, lr, key, save_steps, cfg: _GDConfig) -> Trajectory:
    net0 = eqx.combine(params, static)
    valid = _tr.member_valid(params, objective)
    objective = _tr.safe_objective(objective, valid)
    flat0, unravel, loss_fn, readout = _tr.flat_problem(params, static, objective)
    value_and_grad = jax.value_and_grad(loss_fn)
    opt = optax.sgd(lr)
    opt_state0 = opt.init(flat0)

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

    def gd_step(step_loss, carry):  # one step on `step_loss` (the loss, or a minibatch's)
        p, s = carry
        g = jax.grad(step_loss)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s

    def cond(carry):
        i, _, _, _, active, _ = carry
        return (i < n - 1) & active

    def body(carry):
        i, p, s, (bw, bwd, bl), _, _ = carry
        p_new, s_new = _steps(save_steps[i], save_steps[i + 1], (p, s), gd_step, loss_fn,
                              params, static, objective, key, cfg.batch_size)  # fmt: skip
        w, wd, lval = summary(p_new)
        bad = ~jnp.isfinite(lval) | (lval > cfg.divergence_factor * jnp.maximum(l0, 1e-300))
        done = lval - l_star <= cfg.converge_rtol * gap0
        # A diverged member keeps its last finite state.
        p_new = jnp.where(bad, p, p_new)
        bufs = (bw.at[i + 1].set(w), bwd.at[i + 1].set(wd), bl.at[i + 1].set(lval))
        return i + 1, p_new, s_new, bufs, ~(bad | done), bad

    init = (jnp.asarray(0), flat0, opt_state0, bufs, jnp.asarray(True), jnp.asarray(False))
    i_end, p_end, _, (bw, bwd, bl), _, diverged = jax.lax.while_loop(cond, body, init)
    bw, bwd, bl = fill_after_end(jnp.arange(n) <= i_end, bw, bwd, bl, bw[i_end], bl[i_end])
    converged = (bl[i_end] - l_star <= cfg.converge_rtol * gap0) & ~diverged
    status = run_status(
        invalid=~valid,
        non_finite=False,
        diverged=diverged,
        step_budget=False,
        not_converged=~converged,
    )
    nan = jnp.where(valid, 1.0, jnp.nan)  # an invalid member's summaries are NaN
    times = save_steps.astype(jnp.result_type(lr)) * lr  # gradient-flow time = steps x lr
    return Trajectory(
        ts=times,
        weights=bw * nan,
        weights_dot=bwd * nan,
        loss=bl * nan,
        t_end=times[i_end],
        status=status,
        num_steps=save_steps[i_end],
        final=eqx.combine(unravel(p_end), static),
        d_A=net0.d_A,
        method="gd" if cfg.batch_size is None else "sgd",
        fusion_layer=net0.fusion_layer,
        weight_decay=_tr.split_decay(objective)[1],
    )


class _GD(eqx.Module):
    """One member's GD loop as a hashable callable (static configuration) for `_solve.call`:
    compiled once per structure, vmapped over a batch, on one device or sharded over several."""

    static: FusionDLN = eqx.field(static=True)
    cfg: _GDConfig = eqx.field(static=True)

    def __call__(self, params, objective, lr, key, save_steps):
        return _gd_one(params, self.static, objective, lr, key, save_steps, self.cfg)


def pow2_steps(need: float) -> int:
    """A step budget of at least `need`, rounded up to a power of two (at most 2^20), so that
    batches of similar horizons share one compiled loop."""
    return int(2 ** min(20, math.ceil(math.log2(max(1.0, need)))))
