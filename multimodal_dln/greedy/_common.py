"""Helpers shared by the discrete trainer (`_trainer`) and the hybrid flow (`_flow`): argument
checks, batch dimensions and the per-step closed-form diagnostics (docs/theory.md §6)."""

from __future__ import annotations

import jax.numpy as jnp

from .._network import FusionDLN
from .._statistics import Statistics
from .._validation import check
from ._diagnostics import head_weights, utilization_from_weights


def check_alpha(alpha):
    alpha = jnp.asarray(alpha, dtype=float)
    return check(
        alpha,
        ~(alpha >= 0),
        f"alpha (threshold, log10 units) must be >= 0 (inf: never re-balance); got {alpha}.",
    )


def net_batch_size(net) -> int:
    """Size of the leading batch axis of a batched network."""
    return (net.fusion_A if isinstance(net, FusionDLN) else net.layers_0[0]).shape[0]


def net_batch_ndim(net) -> int:
    a = net.fusion_A if isinstance(net, FusionDLN) else net.layers_0[0]
    return a.ndim - 2


def obj_batch_ndim(obj) -> int:
    if isinstance(obj, Statistics):
        return obj.sigma_xx.ndim - 2
    return obj.x_A.ndim - 2


def obj_dims(obj):
    if isinstance(obj, Statistics):
        return obj.d_A, obj.d_B, obj.d_out
    return obj.x_A.shape[-1], obj.x_B.shape[-1], obj.y.shape[-1]


def obj_size(obj):
    return (obj.sigma_xx if isinstance(obj, Statistics) else obj.x_A).shape[0]


def stats_diag(net, stats: Statistics, metric: str):
    """Per-step diagnostics of a linear network on statistics: prediction weights (the head
    average) and d_util (closed form)."""
    ws = head_weights(net)
    w0p = head_weights(net, (1.0, 0.0))[0]
    w1p = head_weights(net, (0.0, 1.0))[-1]
    u = utilization_from_weights(ws, w0p, w1p, stats, metric)
    w_pred = sum(ws) / len(ws)
    return w_pred, u.d_util


def half_thresholds(stats: Statistics):
    """The first-crossing thresholds ||W_A^uni|| / 2 and ||W*_B|| / 2 of t_A and t_B
    (docs/theory.md §7)."""
    thr_A = 0.5 * jnp.linalg.norm(stats.unimodal_weights("A"))
    thr_B = 0.5 * jnp.linalg.norm(stats.optimal_weights()[..., stats.d_A :])
    return thr_A, thr_B
