"""Fixed points, loss plateaus, drives and which modality is learned first.

Zhang et al. 2024, fixed points M_0, M_A, M_B, M_* and the unimodal plateau (docs/theory.md §2);
the drives s_A, s_B, g_B of the phase-time formulas (docs/theory.md §1, §2, §3).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._statistics import Statistics, require_two_modalities
from .._validation import check_open_interval, check_positive, check_structure
from ._util import _f, _is_scalar, _norm, _sign


# ------------------------------------------------------------------------------------------------
# Fixed points and loss plateaus (docs/theory.md §2)
# ------------------------------------------------------------------------------------------------
def fixed_point_weights(stats: Statistics, point: str) -> Float[Array, "*batch o d"]:
    """[W_A^tot, W_B^tot] at a fixed point of late/intermediate fusion (Zhang et al. 2024, fixed
    points M_0, M_A, M_B, M_*; docs/theory.md §2):

    - "0": M_0 = (0, 0);
    - "A": M_A = (Sigma_yxA Sigma_A^-1, 0) = (W_A^uni, 0), the unimodal plateau;
    - "B": M_B = (0, Sigma_yxB Sigma_B^-1);
    - "*": M_* = Sigma_yx Sigma^+ (the global minimum; min-norm if Sigma is singular).

    Pseudo-inverses are used, so rank-deficient blocks give the minimum-norm fixed point.
    """
    shape = stats.sigma_yx.shape
    if point == "0":
        return jnp.zeros(shape, stats.sigma_yx.dtype)
    if point == "*":
        return stats.optimal_weights()
    if point in ("A", "B"):
        w = stats.unimodal_weights(point)
        zeros = jnp.zeros(w.shape[:-1] + ((stats.d_B,) if point == "A" else (stats.d_A,)), w.dtype)
        return jnp.concatenate([w, zeros] if point == "A" else [zeros, w], axis=-1)
    raise ValueError(f"point must be one of '0', 'A', 'B', '*'; got {point!r}.")


def fixed_point_loss(stats: Statistics, point: str) -> Float[Array, "*batch"]:
    """Training loss at a fixed point (docs/theory.md §2), L = 1/2 <(y - y_hat)^2>:

    - L(M_0) = 1/2 tr Sigma_yy;
    - L(M_A) = 1/2 (tr Sigma_yy - Sigma_yxA Sigma_A^-1 Sigma_yxA^T), L(M_B) likewise;
    - L(M_*) = 1/2 (tr Sigma_yy - Sigma_yx Sigma^-1 Sigma_yx^T) (0 for noiseless full-rank data).
    """
    return stats.loss(fixed_point_weights(stats, point))


def plateau_loss(stats: Statistics, modality: str = "A") -> Float[Array, "*batch"]:
    """Loss on the unimodal plateau M_A (or M_B): L(M_A) = 1/2 (tr Sigma_yy - Sigma_yxA Sigma_A^-1
    Sigma_yxA^T) (Zhang et al. 2024, unimodal plateau; docs/theory.md §2)."""
    if modality not in ("A", "B"):
        raise ValueError(f"modality must be 'A' or 'B'; got {modality!r}.")
    return fixed_point_loss(stats, modality)


def plateau_loss_ratio_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, ...]:
    """L(M_A) / L(M_0) = (1 - rho^2) / (ratio^2 + 2 rho ratio + 1) on the toy data with teacher
    (1, 1) and no noise (docs/theory.md §2): 0.200 at (ratio 2, rho 0), 0.107 at (2, 0.5)."""
    rho, ratio = _f(rho), _f(ratio)
    return (1.0 - rho**2) / (ratio**2 + 2.0 * rho * ratio + 1.0)


# ------------------------------------------------------------------------------------------------
# Drives (docs/theory.md §1-§3)
# ------------------------------------------------------------------------------------------------
class Drives(NamedTuple):
    """(s_A, s_B, g_B, w_uni): the four numbers the unimodal-phase theory depends on
    (docs/theory.md §1, §3).

    - s_A = ||Sigma_yxA||, s_B = ||Sigma_yxB|| (signed for scalar modalities, see the package
      docstring and docs/theory.md §2);
    - g_B = ||Sigma_yxB - W_A^uni Sigma_AB||, B's drive once A sits at M_A;
    - w_uni = ||W_A^uni||, the size of A's plateau weights.

    A NamedTuple, hence a pytree: `jax.vmap(theory.drives)(stats)` works.
    """

    s_A: Array
    s_B: Array
    g_B: Array
    w_uni: Array


def drives(stats: Statistics, *, signed: bool | None = None) -> Drives:
    """The drives (s_A, s_B, g_B, ||W_A^uni||) of general statistics (docs/theory.md §2, §3).

    `signed=None` (default) uses the signed projections for scalar modalities and output (the
    authors' convention, docs/theory.md §2 "sign convention") and Frobenius norms otherwise;
    `signed=False` forces norms (the authors' `lag_twolayer`), `signed=True` requires scalar
    modalities. Output arrays have the statistics' batch shape.
    """
    require_two_modalities(stats, "theory.drives (s_A, s_B, g_B)")
    scalar = _is_scalar(stats)
    if signed is None:
        signed = scalar
    if signed and not scalar:
        raise ValueError(
            "signed=True needs scalar modalities and output (d_A = d_B = d_out = 1); got "
            f"(d_A, d_B, d_out) = ({stats.d_A}, {stats.d_B}, {stats.d_out})."
        )
    w_uni = stats.unimodal_weights("A")
    g_vec = stats.sigma_yxB - w_uni @ stats.sigma_AB
    if signed:
        syxA, syxB, g = stats.sigma_yxA[..., 0, 0], stats.sigma_yxB[..., 0, 0], g_vec[..., 0, 0]
        sgn_A, sgn_B = _sign(syxA), _sign(g)
        return Drives(syxA * sgn_A, syxB * sgn_B, g * sgn_B, jnp.abs(w_uni[..., 0, 0]))
    return Drives(_norm(stats.sigma_yxA), _norm(stats.sigma_yxB), _norm(g_vec), _norm(w_uni))


def drives_toy(rho: ArrayLike, ratio: ArrayLike) -> Drives:
    """Toy-data drives (sigma_B = 1, teacher (1, 1); the authors' `lag_depth` plug-in,
    docs/theory.md §1, §3): s_A = r^2 + rho r, s_B = 1 + rho r (signed), g_B = 1 - rho^2,
    ||W_A^uni|| = 1 + rho / r."""
    rho = check_open_interval("rho", rho, -1.0, 1.0)
    ratio = check_positive("ratio", ratio)
    rho, ratio = _f(rho), _f(ratio)
    return Drives(ratio**2 + rho * ratio, 1.0 + rho * ratio, 1.0 - rho**2, 1.0 + rho / ratio)


def learned_first(stats: Statistics) -> Int[Array, "*batch"]:
    """Which modality is learned first: 0 for A, 1 for B (docs/theory.md §2, §4).

    In late and intermediate fusion each branch escapes the origin at the rate of its own
    input-output correlation, so the modality with the larger ||Sigma_yxm|| goes first (ties: A).
    This is not necessarily the modality that contributes more (`superficial_preference`).
    """
    return jnp.where(_norm(stats.sigma_yxB) > _norm(stats.sigma_yxA), 1, 0)


def has_unimodal_phase(
    stats: Statistics, depth: int, fusion_layer: int, *, rtol: float = 1e-9
) -> Bool[Array, "*batch"]:
    """Whether training goes through a unimodal phase (a plateau at M_A or M_B; Zhang et al.
    2024, early vs late fusion; docs/theory.md §2, §3).

    Early fusion (L_f = 1): never (one joint escape along Sigma_yx). Late and intermediate
    fusion (L_f >= 2): exactly when the two modalities' drives differ, ||Sigma_yxA|| !=
    ||Sigma_yxB|| (relative tolerance `rtol`); its length grows without bound as g_B -> 0.
    """
    check_structure(depth, fusion_layer)
    s_A, s_B = _norm(stats.sigma_yxA), _norm(stats.sigma_yxB)
    differ = jnp.abs(s_A - s_B) > rtol * jnp.maximum(s_A, s_B)
    return differ & (fusion_layer >= 2)


# ------------------------------------------------------------------------------------------------
# Relabelling the modalities
# ------------------------------------------------------------------------------------------------
def swap_modalities(stats: Statistics) -> Statistics:
    """The same statistics with the roles of A and B exchanged (B's block first)."""
    dA = stats.d_A
    perm = np.concatenate([np.arange(dA, stats.d), np.arange(dA)])
    sxx = stats.sigma_xx[..., perm, :][..., :, perm]
    return Statistics(sxx, stats.sigma_yx[..., perm], stats.sigma_yy, d_A=stats.d_B)


def orient_first_learned(stats: Statistics) -> tuple[Statistics, Int[Array, "*batch"]]:
    """Relabel each member so that A is the modality learned first (`learned_first`), as every
    formula here assumes (docs/theory.md §1). Returns (statistics, swapped) with swapped = 1
    where A and B were exchanged. Batched statistics need d_A = d_B (the swap must keep the
    shapes)."""
    first = learned_first(stats)
    if stats.d_A != stats.d_B:
        if stats.batch_shape:
            raise ValueError(
                f"orienting a batch needs d_A = d_B; got d_A = {stats.d_A}, d_B = {stats.d_B} "
                "(swap members individually with swap_modalities)."
            )
        return (swap_modalities(stats) if int(first) == 1 else stats), first
    swapped = swap_modalities(stats)
    pick = lambda a, b: jnp.where(  # noqa: E731
        first.reshape(first.shape + (1,) * (a.ndim - first.ndim)) == 1, b, a
    )
    return jax.tree.map(pick, stats, swapped), first
