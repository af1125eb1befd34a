"""Pieces shared by gradient flow and gradient descent: batching, checks, readouts, horizons,
and weight decay (`Regularized`: the objective J = L + lambda/2 ||theta||^2, docs/theory.md §8)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _linalg
from ._dataset import Dataset, dataset_valid
from ._loss import (
    decay_penalty,
    linear_readout,
    loss,
    regularized_minimum,
    regularized_unimodal,
)
from ._modalities import all_drive_norms
from ._network import FusionDLN
from ._solve import resolve_batch
from ._statistics import Statistics
from ._statistics_checks import statistics_valid, validate_statistics
from ._validation import check_finite, check_weight_decay, is_traced


class Regularized(eqx.Module):
    """An objective with weight decay: the solvers minimize J = L + lambda/2 ||theta||^2 over
    every weight (docs/theory.md §8). `weight_decay` is lambda per member (traced)."""

    objective: Statistics | Dataset
    weight_decay: Float[Array, "*batch"]


def split_decay(objective):
    """(objective, lambda) of a `Regularized` objective; (objective, None) without weight decay."""
    if isinstance(objective, Regularized):
        return objective.objective, objective.weight_decay
    return objective, None


def decay_off(weight_decay) -> bool:
    """Weight decay is off: a concrete 0 (scalar or every member), not a traced value."""
    return not is_traced(weight_decay) and not np.any(np.asarray(weight_decay))


def broadcast_batch(tree, n: int):
    """Every array leaf of an unbatched pytree repeated along a new leading batch axis of `n`."""
    return jax.tree.map(
        lambda a: jnp.broadcast_to(a, (n,) + jnp.shape(a)) if eqx.is_array(a) else a, tree
    )


def with_weight_decay(net: FusionDLN, objective, weight_decay, batch, obj_axis):
    """The objective the solve gets, and its batch axis: `objective` itself when weight decay is
    off (a concrete 0, the default: the solve is exactly the one without it), else a
    `Regularized` objective, batched (the data broadcast) when either part is. Raises for
    structures whose regularized minimum is not known (`_loss.decay_penalty`)."""
    lam = check_weight_decay(weight_decay, batch)
    if decay_off(lam):
        return objective, obj_axis
    if net.n_modalities != 2:
        raise ValueError(
            f"weight_decay > 0 is implemented for two modalities; the network has "
            f"M = {net.n_modalities} (docs/theory.md §8)."
        )
    if not net.is_linear or decay_penalty(net.depth, net.fusion_layer, *_dims(net)) is None:
        raise ValueError(
            "weight_decay > 0 needs a linear network of depth 1, or of depth 2 with d_out = 1 "
            "(late fusion: d_A = d_B = 1), where the regularized minimum is known "
            f"(docs/theory.md §8); got depth {net.depth}, fusion_layer {net.fusion_layer}, "
            f"activation {net.activation!r}, (d_A, d_B, d_out) = {_dims(net)}."
        )
    dtype = jax.tree.leaves(eqx.filter(net, eqx.is_array))[0].dtype
    lam = jnp.asarray(lam, dtype)
    if batch is None or (lam.ndim == 0 and obj_axis is None):
        return Regularized(objective, lam.reshape(())), obj_axis
    lam = jnp.broadcast_to(lam, (batch,))
    if obj_axis is None:
        objective = broadcast_batch(objective, batch)
    return Regularized(objective, lam), 0


def _dims(net: FusionDLN) -> tuple[int, int, int]:
    return net.d_A, net.d_B, net.d_out


def batch_ndim_net(net: FusionDLN) -> int:
    return net.fusion_A.ndim - 2


def batch_ndim_objective(objective) -> int:
    objective, _ = split_decay(objective)
    if isinstance(objective, Statistics):
        return objective.sigma_xx.ndim - 2
    if isinstance(objective, Dataset):
        return objective.x_A.ndim - 2
    raise TypeError(f"objective must be a Statistics or a Dataset; got {type(objective).__name__}.")


def prepare(net: FusionDLN, objective, weight_decay=0.0):
    """Validate a (network, objective) pair and work out the batch layout.

    Returns `(net, objective, batch_size, net_axis, obj_axis)` with networks and objectives
    carrying at most one leading batch axis; axis entries are 0 (batched) or None (shared).
    With `weight_decay` (not a concrete 0) the objective is `Regularized` (`with_weight_decay`).
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
    _check_dims(net, objective)
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
    objective, obj_axis = with_weight_decay(net, objective, weight_decay, batch, obj_axis)
    return net, objective, batch, net_axis, obj_axis


def _check_dims(net: FusionDLN, objective) -> None:
    """The network's modality sizes and output size must be the data's."""
    if isinstance(objective, Statistics):
        d = objective.modality_dims + (objective.d_out,)
    elif net.n_modalities != 2:
        raise ValueError(
            f"a Dataset holds two modalities (x_A, x_B); the network has M = "
            f"{net.n_modalities}: train it on Statistics (docs/theory.md §11)."
        )
    else:
        d = (objective.x_A.shape[-1], objective.x_B.shape[-1], objective.y.shape[-1])
    mine = net.modality_dims + (net.d_out,)
    if d != mine:
        what = "(d_A, d_B, d_out)" if len(mine) == 3 else "(d_1, ..., d_M, d_out)"
        raise ValueError(f"network dims {what} = {mine} do not match the data's {d}.")


def batch_size_objective(objective) -> int:
    objective, _ = split_decay(objective)
    return (objective.sigma_xx if isinstance(objective, Statistics) else objective.x_A).shape[0]


def readout(net: FusionDLN, objective):
    """The effective weights the measurements use: W^tot for linear nets, else the linear fit."""
    if net.is_linear:
        return net.total_weights()
    return linear_readout(net, split_decay(objective)[0])


def objective_valid(objective) -> jax.Array:
    """Per-member validity of the data (traceable): see `_statistics_checks.statistics_valid`; with
    weight decay, lambda must also be finite and >= 0."""
    objective, lam = split_decay(objective)
    if lam is not None:
        return objective_valid(objective) & jnp.isfinite(lam) & (lam >= 0)
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
    objective, lam = split_decay(objective)
    if lam is not None:
        return Regularized(safe_objective(objective, valid), jnp.where(valid, lam, 0.0))
    if isinstance(objective, Statistics):
        eye = jnp.eye(objective.d, dtype=objective.sigma_xx.dtype)
        return Statistics(
            jnp.where(valid, objective.sigma_xx, eye),
            jnp.where(valid, objective.sigma_yx, 0.0),
            jnp.where(valid, objective.sigma_yy, 0.0),
            d_A=objective.d_A,
            dims=objective.dims,
        )
    return Dataset(*(jnp.where(valid, a, 0.0) for a in (objective.x_A, objective.x_B, objective.y)))


def n_params_per_member(net: FusionDLN, net_axis) -> int:
    """Number of trainable entries of one member (from shapes only)."""
    leaves = jax.tree.leaves(eqx.filter(net, eqx.is_array))
    return sum(int(np.prod(a.shape[1:] if net_axis == 0 else a.shape)) for a in leaves)


def statistics_of(objective) -> Statistics:
    objective, _ = split_decay(objective)
    return objective if isinstance(objective, Statistics) else objective.statistics()


def target_loss(net: FusionDLN, objective):
    """Lowest reachable loss L*: the least-squares loss for linear nets; 0 for nonlinear nets.
    With weight decay lambda > 0 the minimum J* of the regularized objective (docs/theory.md §8)."""
    objective, lam = split_decay(objective)
    if lam is not None:
        j_star = regularized_minimum(statistics_of(objective), lam, net.depth, net.fusion_layer)[1]
        return jnp.where(lam > 0, j_star, target_loss(net, objective))
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
    With weight decay lambda > 0 every drive is lowered by lambda and the plateau drives use the
    regularized unimodal weights (docs/theory.md §8).
    """
    objective, lam = split_decay(objective)
    stats = statistics_of(objective)
    layers = [a for a in jax.tree.leaves(eqx.filter(net, eqx.is_array))]
    logs = jnp.stack([jnp.log(jnp.linalg.norm(a) + 1e-300) for a in layers])
    u = jnp.clip(jnp.exp(jnp.mean(logs)), 1e-300, 0.5)
    plain = horizon_at_scale(stats, u, net.depth)
    if lam is None:
        return plain
    decayed = horizon_at_scale(stats, u, net.depth, lam, net.fusion_layer)
    return jnp.where(lam > 0, decayed, plain)


def horizon_at_scale(stats, u, L, weight_decay=None, fusion_layer=None) -> jax.Array:
    """The `default_horizon` estimate for a network of depth `L` (static or traced) whose
    layers have typical scale `u`; shared with the reduced dynamics. With `weight_decay`
    lambda (and the static `fusion_layer`) the drives are those of docs/theory.md §8."""
    if weight_decay is not None:
        return _horizon_decayed(stats, u, L, weight_decay, fusion_layer)
    s_full = _nrm(stats.sigma_yx)
    if stats.n_modalities > 2:  # M - 1 sequential escapes, each at worst at the slowest drive
        drives = all_drive_norms(stats)
        w_norm = _nrm(stats.optimal_weights())
        return _horizon(stats, u, L, s_full, drives, w_norm, phases=stats.n_modalities - 1)
    g_B = _nrm(stats.sigma_yxB - stats.unimodal_weights("A") @ stats.sigma_AB)
    g_A = _nrm(stats.sigma_yxA - stats.unimodal_weights("B") @ _t(stats.sigma_AB))
    drives = jnp.stack([_nrm(stats.sigma_yxA), _nrm(stats.sigma_yxB), g_A, g_B])
    return _horizon(stats, u, L, s_full, drives, _nrm(stats.optimal_weights()))


def _horizon_decayed(stats, u, L, lam, fusion_layer) -> jax.Array:
    """`horizon_at_scale` with weight decay lambda: every growth rate is lowered by lambda, the
    plateau drives use the regularized unimodal weights, and the final settling is timed on the
    smaller nonzero block of the regularized minimum (docs/theory.md §8)."""
    w_A = regularized_unimodal(stats, lam, L)
    w_B = regularized_unimodal(_b_first(stats), lam, L)
    g_B = _nrm(stats.sigma_yxB - w_A @ stats.sigma_AB)
    g_A = _nrm(stats.sigma_yxA - w_B @ _t(stats.sigma_AB))
    drives = jnp.stack([_nrm(stats.sigma_yxA), _nrm(stats.sigma_yxB), g_A, g_B]) - lam
    floor = 1e-3 * _nrm(stats.sigma_yx) + 1e-300
    s_full = jnp.maximum(_nrm(stats.sigma_yx) - lam, floor)
    w = regularized_minimum(stats, lam, L, fusion_layer)[0]
    blocks = jnp.stack([_nrm(w[..., : stats.d_A]), _nrm(w[..., stats.d_A :])])
    w_small = jnp.min(jnp.where(blocks > 1e-3 * _nrm(w), blocks, jnp.inf))
    return _horizon(stats, u, L, s_full, drives, jnp.where(jnp.isfinite(w_small), w_small, 0.0))


def _horizon(stats, u, L, s_full, drives, w_norm, phases: int = 1) -> jax.Array:
    """4 (escape(s_full) + `phases` x escape(slowest drive above the floor) + final settling)
    (§7; `phases` = M - 1 for M modalities)."""
    floor = 1e-3 * _nrm(stats.sigma_yx) + 1e-300
    s_min = jnp.maximum(jnp.min(jnp.where(drives > floor, drives, jnp.inf)), floor)
    s_min = jnp.where(jnp.isfinite(s_min), s_min, floor)

    def escape(s):
        deep = u ** (2 - L) / jnp.where(L > 2, (L - 2) * s, 1.0)
        return jnp.where(L == 1, 1.0 / s, jnp.where(L == 2, jnp.log(1.0 / u) / s, deep))

    eig = _linalg.eigvalsh(stats.sigma_xx)
    lam_max = eig[-1]
    lam_min = jnp.min(jnp.where(eig > 1e-10 * lam_max, eig, jnp.inf))
    w_scale = jnp.maximum(w_norm, 1e-3)
    settle = jnp.log(1e8) / (lam_min * w_scale ** (2.0 - 2.0 / L))
    slow = escape(s_min) if phases == 1 else phases * escape(s_min)
    return 4.0 * (escape(s_full) + slow + settle)


def _nrm(a):
    return jnp.linalg.norm(a)


def _t(a):
    return jnp.swapaxes(a, -1, -2)


def _b_first(stats: Statistics) -> Statistics:
    """The same statistics with modality B's block first (one member)."""
    perm = np.concatenate([np.arange(stats.d_A, stats.d), np.arange(stats.d_A)])
    sxx = stats.sigma_xx[perm][:, perm]
    return Statistics(sxx, stats.sigma_yx[:, perm], stats.sigma_yy, d_A=stats.d_B)


def loss_fn_for(static, objective):
    """The training objective of the weights: the loss L, or with weight decay lambda
    J = L + lambda/2 ||theta||^2 over every weight (docs/theory.md §8)."""
    objective, lam = split_decay(objective)

    def f(params):
        return loss(eqx.combine(params, static), objective)

    if lam is None:
        return f

    def regularized(params):
        squares = sum(jnp.sum(a**2) for a in jax.tree.leaves(params))
        return f(params) + 0.5 * lam * squares

    return regularized


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
