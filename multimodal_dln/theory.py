"""Closed-form results of Zhang, Latham & Saxe (2024) for two-layer fusion networks.

All functions are pure and vectorize under `jax.vmap`; they take `Statistics` (possibly batched)
or the toy parameters. Leading order in the initialization scale u0 -> 0.
Notation (digest section 2): s_m = ||Sigma_yxm||, W_A^uni = Sigma_yxA Sigma_A^-1,
g_B = ||Sigma_yxB - W_A^uni Sigma_AB||.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .statistics import Statistics

__all__ = [
    "time_ratio_toy",
    "time_ratio_two_layer",
    "misattribution_toy",
    "misattribution",
    "plateau_loss",
    "learning_time_two_layer",
]


def time_ratio_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, "..."]:
    """t_B / t_A = 1 + (ratio^2 - 1) / (1 - rho^2) for two-layer late fusion on the toy data
    (digest 2.3; ratio = sigma_A / sigma_B, teacher w = (1, 1)). Early fusion: 1."""
    rho, ratio = jnp.asarray(rho, dtype=float), jnp.asarray(ratio, dtype=float)
    return 1.0 + (ratio**2 - 1.0) / (1.0 - rho**2)


def _drives(stats: Statistics):
    w_uni = stats.unimodal_weights("A")
    resid_B = stats.sigma_yxB - w_uni @ stats.sigma_AB
    return stats.sigma_yxA, stats.sigma_yxB, resid_B


def time_ratio_two_layer(stats: Statistics) -> Float[Array, "*batch"]:
    """Two-layer late fusion, general statistics (digest 2.3; authors' `sweep.lag_twolayer`):

        t_B / t_A = 1 + (||Sigma_yxA|| - ||Sigma_yxB||) / ||Sigma_yxB - W_A^uni Sigma_AB||.

    For scalar modalities and output the *signed* form
    1 + (Sigma_yxA - Sigma_yxB) / (Sigma_yxB - W_A^uni Sigma_AB) is used, which is the toy closed
    form and stays correct when Sigma_yxB < 0 (digest 2.3, sign caveat); for vector modalities
    the norm form is an approximation (the drive directions rotate).
    """
    s_A, s_B, g_B = _drives(stats)
    if stats.d_A == 1 and stats.d_B == 1 and stats.d_out == 1:
        return 1.0 + (s_A - s_B)[..., 0, 0] / g_B[..., 0, 0]
    n = lambda a: jnp.linalg.norm(a, axis=(-2, -1))  # noqa: E731
    return 1.0 + (n(s_A) - n(s_B)) / n(g_B)


def learning_time_two_layer(stats: Statistics, init_scale: ArrayLike) -> Float[Array, "*batch"]:
    """t_A ~ ln(1/u0) / ||Sigma_yxA|| (gradient-flow time, tau = 1; digest 2.3), with u0 the
    per-layer scale (W_A^tot(0) ~ u0^2). Leading order: O(1) / s_A corrections are dropped."""
    u0 = jnp.asarray(init_scale, dtype=float)
    return jnp.log(1.0 / u0) / jnp.linalg.norm(stats.sigma_yxA, axis=(-2, -1))


def misattribution_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, "..."]:
    """W_A^tot(t_uni) - W_A^tot(inf) = rho / ratio on the toy data (digest 2.4)."""
    return jnp.asarray(rho, dtype=float) / jnp.asarray(ratio, dtype=float)


def misattribution(stats: Statistics) -> Float[Array, "*batch o dA"]:
    """W_A^uni - W*_A = W*_B Sigma_BA Sigma_A^-1 (digest 2.4, general form)."""
    w_star = stats.optimal_weights()
    return stats.unimodal_weights("A") - w_star[..., : stats.d_A]


def plateau_loss(stats: Statistics, modality: str = "A") -> Float[Array, "*batch"]:
    """Loss on the unimodal plateau M_A (or M_B): L(M_A) = 1/2 (tr Sigma_yy - Sigma_yxA Sigma_A^-1
    Sigma_yxA^T) (digest 2.1)."""
    w = stats.unimodal_weights(modality)
    if modality == "A":
        full = jnp.concatenate([w, jnp.zeros(w.shape[:-1] + (stats.d_B,), w.dtype)], axis=-1)
    else:
        full = jnp.concatenate([jnp.zeros(w.shape[:-1] + (stats.d_A,), w.dtype), w], axis=-1)
    return stats.loss(full)
