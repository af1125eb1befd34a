"""Misattribution during the unimodal phase and superficial modality preference.

Zhang et al. 2024, misattribution and superficial modality preference; docs/theory.md §4.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from .._statistics import Statistics
from .._validation import check_positive
from ._util import _f


def misattribution_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, ...]:
    """W_A^tot(t_uni) - W_A^tot(inf) = rho / ratio on the toy data (Zhang et al. 2024,
    misattribution; docs/theory.md §4)."""
    return jnp.asarray(rho, dtype=float) / jnp.asarray(ratio, dtype=float)


def misattribution(stats: Statistics) -> Float[Array, "*batch o dA"]:
    """W_A^uni - W*_A = W*_B Sigma_BA Sigma_A^-1 (docs/theory.md §4, general form): during the
    unimodal phase A absorbs the part of B's contribution that is correlated with A."""
    w_star = stats.optimal_weights()
    return stats.unimodal_weights("A") - w_star[..., : stats.d_A]


def prioritization_boundary(sigma_ratio: ArrayLike) -> Float[Array, ...]:
    """w_A* / w_B* = (sigma_A / sigma_B)^-2 (Zhang et al. 2024, superficial modality preference,
    the "prioritization" curve; docs/theory.md §4): for independent scalar modalities and
    positive teacher weights, A is learned first iff w_A* / w_B* lies above it
    (w_A* sigma_A^2 > w_B* sigma_B^2, i.e. Sigma_yxA > Sigma_yxB)."""
    return _f(check_positive("sigma_ratio (sigma_A / sigma_B)", sigma_ratio)) ** -2.0


def contribution_boundary(sigma_ratio: ArrayLike) -> Float[Array, ...]:
    """w_A* / w_B* = (sigma_A / sigma_B)^-1 (Zhang et al. 2024, the "contribution" curve;
    docs/theory.md §4): A contributes more to the output variance (and to the loss reduction)
    iff w_A* / w_B* lies above it."""
    return _f(check_positive("sigma_ratio (sigma_A / sigma_B)", sigma_ratio)) ** -1.0


def superficial_preference(weight_ratio: ArrayLike, sigma_ratio: ArrayLike) -> Bool[Array, ...]:
    """True where the modality learned first contributes *less* (Zhang et al. 2024, superficial
    modality preference, the region between the two curves; docs/theory.md §4): the long
    plateau then sits at the higher of L(M_A), L(M_B).

    `weight_ratio` = w_A* / w_B* > 0, `sigma_ratio` = sigma_A / sigma_B, rho = 0. Example:
    sigma_A / sigma_B = 2, w* = (1.5, 4): A first, plateau L(M_A) / L(M_0) = 0.64.
    """
    w = _f(check_positive("weight_ratio (w_A* / w_B*)", weight_ratio))
    a_first = w > prioritization_boundary(sigma_ratio)
    a_more = w > contribution_boundary(sigma_ratio)
    return a_first != a_more
