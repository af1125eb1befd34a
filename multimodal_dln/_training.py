"""Pieces shared by gradient flow and gradient descent: batching, checks, readouts, horizons."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from . import _linalg
from ._dataset import Dataset, dataset_valid
from ._loss import linear_readout, loss
from ._network import FusionDLN
from ._solve import resolve_batch
from ._statistics import Statistics, statistics_valid, validate_statistics
from ._validation import check_finite


def batch_ndim_net(net: FusionDLN) -> int:
    return net.fusion_A.ndim - 2


def batch_ndim_objective(objective) -> int:
    if isinstance(objective, Statistics):
        return objective.sigma_xx.ndim - 2
    if isinstance(objective, Dataset):
        return objective.x_A.ndim - 2
    raise TypeError(f"objective must be a Statistics or a Dataset; got {type(objective).__name__}.")


def prepare(net: FusionDLN, objective):
    """Validate a (network, objective) pair and work out the batch layout.

    Returns `(net, objective, batch_size, net_axis, obj_axis)` with networks and objectives
    carrying at most one leading batch axis; axis entries are 0 (batched) or None (shared).
    """
    if not isinstance(net, FusionDLN):
        raise TypeError(f"net must be a FusionDLN; got {type(net).__name__}.")
    nb, ob = batch_ndim_net(net), batch_ndim_objective(objective)
    if nb > 1 or ob > 1:
        raise ValueError(
            "networks and statistics may carry at most one leading batch axis; "
            f"got {nb} on the network and {ob} on the objective (reshape to one axis first)."
        )
    if (nb and net.fusion_A.shape[0] == 0) or (ob and batch_size_objective(objective) == 0):
        raise ValueError(
            "the batch has 0 members (a leading axis of size 0); a batch needs at least one."
        )
    d = (
        (objective.d_A, objective.d_B, objective.d_out)
        if isinstance(objective, Statistics)
        else (objective.x_A.shape[-1], objective.x_B.shape[-1], objective.y.shape[-1])
    )
    if d != (net.d_A, net.d_B, net.d_out):
        raise ValueError(
            f"network dims (d_A, d_B, d_out) = {(net.d_A, net.d_B, net.d_out)} do not match the "
            f"data's {d}."
        )
    if isinstance(objective, Statistics):
        if not net.is_linear:
            raise ValueError(
                f"a network with activation={net.activation!r} cannot train on statistics alone; "
                "pass a Dataset (e.g. multimodal_dln.sample(key, stats, n))."
            )
        objective = validate_statistics(objective)
    else:
        objective = Dataset(
            check_finite("x_A", objective.x_A),
            check_finite("x_B", objective.x_B),
            check_finite("y", objective.y),
        )
    batch, (net_axis, obj_axis) = resolve_batch(
        [
            ("networks", net.fusion_A.shape[0] if nb else None),
            ("statistics", batch_size_objective(objective) if ob else None),
        ]
    )
    return net, objective, batch, net_axis, obj_axis


def batch_size_objective(objective) -> int:
    return (objective.sigma_xx if isinstance(objective, Statistics) else objective.x_A).shape[0]


def readout(net: FusionDLN, objective):
    """The effective weights the measurements use: W^tot for linear nets, else the linear fit."""
    if net.is_linear:
        return net.total_weights()
    return linear_readout(net, objective)


def objective_valid(objective) -> jax.Array:
    """Per-member validity of the data (traceable): see `_statistics.statistics_valid`."""
    if isinstance(objective, Statistics):
        return statistics_valid(objective)
    return dataset_valid(objective)


def member_valid(params, objective) -> jax.Array:
    """One member's inputs are usable (traceable): valid data and finite initial weights."""
    return objective_valid(objective) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(params)])
    )


def safe_objective(objective, valid):
    """`objective` where `valid`, else harmless data with a zero loss gap (identity input
    moments, zero targets): an invalid member then converges at once instead of spending the
    batch's steps on NaNs, and is reported `INVALID_INPUT`. Exact for valid members."""
    if isinstance(objective, Statistics):
        eye = jnp.eye(objective.d, dtype=objective.sigma_xx.dtype)
        return Statistics(
            jnp.where(valid, objective.sigma_xx, eye),
            jnp.where(valid, objective.sigma_yx, 0.0),
            jnp.where(valid, objective.sigma_yy, 0.0),
            d_A=objective.d_A,
        )
    return Dataset(*(jnp.where(valid, a, 0.0) for a in (objective.x_A, objective.x_B, objective.y)))


def n_params_per_member(net: FusionDLN, net_axis) -> int:
    """Number of trainable entries of one member (from shapes only)."""
    leaves = jax.tree.leaves(eqx.filter(net, eqx.is_array))
    return sum(int(np.prod(a.shape[1:] if net_axis == 0 else a.shape)) for a in leaves)


def statistics_of(objective) -> Statistics:
    return objective if isinstance(objective, Statistics) else objective.statistics()


def target_loss(net: FusionDLN, objective):
    """Lowest reachable loss L*: the least-squares loss for linear nets; 0 for nonlinear nets."""
    if net.is_linear:
        return statistics_of(objective).min_loss()
    return jnp.zeros(())


def default_horizon(net: FusionDLN, objective) -> jax.Array:
    """A generous upper estimate of the time to converge from this initialization.

    Escape from a saddle at per-layer scale u with drive s takes ~ln(1/u)/s (L = 2) or
    u^{2-L}/((L-2) s) (L >= 3) (Zhang et al. 2024; docs/theory.md §2-§3, §7). We take the
    slowest relevant drive (the modality and residual correlations ||Sigma_yxm||,
    ||Sigma_yxB - W_A^uni Sigma_AB||, ...),
    add the final linear convergence along the smallest eigen-direction of Sigma_xx, and a
    safety factor of 4. A member that has not converged by then is flagged, not silently kept.
    """
    stats = statistics_of(objective)
    layers = [a for a in jax.tree.leaves(eqx.filter(net, eqx.is_array))]
    logs = jnp.stack([jnp.log(jnp.linalg.norm(a) + 1e-300) for a in layers])
    u = jnp.clip(jnp.exp(jnp.mean(logs)), 1e-300, 0.5)
    return horizon_at_scale(stats, u, net.depth)


def horizon_at_scale(stats, u, L) -> jax.Array:
    """The `default_horizon` estimate for a network of depth `L` (static or traced) whose
    layers have typical scale `u`; shared with the reduced dynamics."""

    def nrm(a):
        return jnp.linalg.norm(a)

    s_full = nrm(stats.sigma_yx)
    g_B = nrm(stats.sigma_yxB - stats.unimodal_weights("A") @ stats.sigma_AB)
    g_A = nrm(stats.sigma_yxA - stats.unimodal_weights("B") @ jnp.swapaxes(stats.sigma_AB, -1, -2))
    drives = jnp.stack([nrm(stats.sigma_yxA), nrm(stats.sigma_yxB), g_A, g_B])
    floor = 1e-3 * s_full + 1e-300
    s_min = jnp.maximum(jnp.min(jnp.where(drives > floor, drives, jnp.inf)), floor)
    s_min = jnp.where(jnp.isfinite(s_min), s_min, floor)

    def escape(s):
        deep = u ** (2 - L) / jnp.where(L > 2, (L - 2) * s, 1.0)
        return jnp.where(L == 1, 1.0 / s, jnp.where(L == 2, jnp.log(1.0 / u) / s, deep))

    eig = _linalg.eigvalsh(stats.sigma_xx)
    lam_max = eig[-1]
    lam_min = jnp.min(jnp.where(eig > 1e-10 * lam_max, eig, jnp.inf))
    w_scale = jnp.maximum(nrm(stats.optimal_weights()), 1e-3)
    settle = jnp.log(1e8) / (lam_min * w_scale ** (2.0 - 2.0 / L))
    return 4.0 * (escape(s_full) + escape(s_min) + settle)


def loss_fn_for(static, objective):
    def f(params):
        return loss(eqx.combine(params, static), objective)

    return f


def flat_problem(params, static, objective):
    """One member's problem on the flat parameter vector theta (the ODE/GD state: one array per
    RK stage op instead of one per layer, so fewer tiny XLA ops).

    Returns (theta0, unravel, L(theta), W_tot(theta)): the loss and the end-to-end readout of
    the network rebuilt from theta and the static structure.
    """
    flat0, unravel = jax.flatten_util.ravel_pytree(params)
    tree_loss = loss_fn_for(static, objective)

    def loss_fn(flat):
        return tree_loss(unravel(flat))

    def readout_fn(flat):
        return readout(eqx.combine(unravel(flat), static), objective)

    return flat0, unravel, loss_fn, readout_fn
