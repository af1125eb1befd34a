"""Restricted optima and residual drives of M >= 2 modalities (docs/theory.md §11).

When a set S of modalities has been learned and the others are still near zero, a late- or
intermediate-fusion network sits at the best predictor from S alone,

    W_S = Sigma_{yx,S} Sigma_{SS}^+   (zero on the modalities outside S),

the M-modality analogue of M_A (docs/theory.md §2), and a modality m outside S is driven by its
block of the residual correlation

    g_m(S) = Sigma_{yx,m} - W_S Sigma_{S,m}   (the m-block of Sigma_yx - W_S Sigma_xx).

S is given as a boolean mask over the modalities, which may be traced (the learning order of a
batch member is data), so one compiled program serves every order. Used by the measurements
(`measure_modalities`), the theory (`theory.phase_times_modalities`) and the solve horizon.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from . import _linalg
from ._statistics import Statistics

__all__ = [
    "all_drive_norms",
    "block_norms",
    "modality_of_coordinates",
    "residual_drive",
    "restricted_optimum",
]


def modality_of_coordinates(stats: Statistics) -> np.ndarray:
    """The modality index of each input coordinate (static)."""
    return np.repeat(np.arange(stats.n_modalities), stats.modality_dims)


def restricted_optimum(
    stats: Statistics, learned: Bool[Array, "*batch M"]
) -> Float[Array, "*batch o d"]:
    """W_S = Sigma_{yx,S} Sigma_{SS}^+, zero outside S = the modalities where `learned` is True:
    the solution of W (P Sigma P + I - P) = Sigma_yx P with P the projector on S's coordinates
    (pseudo-inverse: the minimum-norm point when Sigma_SS is singular)."""
    p = jnp.take(jnp.asarray(learned), modality_of_coordinates(stats), axis=-1).astype(
        stats.sigma_xx.dtype
    )
    pp = p[..., :, None] * p[..., None, :]
    a = pp * stats.sigma_xx + jnp.eye(stats.d, dtype=p.dtype) * (1.0 - p)[..., None, :]
    return (stats.sigma_yx * p[..., None, :]) @ _linalg.pinv_hermitian(a)


def residual_drive(
    stats: Statistics, learned: Bool[Array, "*batch M"]
) -> Float[Array, "*batch o d"]:
    """Sigma_yx - W_S Sigma_xx: block m is the drive g_m(S) on a modality m outside S."""
    return stats.sigma_yx - restricted_optimum(stats, learned) @ stats.sigma_xx


def block_norms(stats: Statistics, w: Float[Array, "*batch o d"]) -> Float[Array, "*batch M"]:
    """Frobenius norm of each modality's block of `w` (..., o, d) -> (..., M)."""
    return jnp.stack(
        [jnp.sqrt(jnp.sum(w[..., s] ** 2, axis=(-2, -1))) for s in stats.modality_slices], -1
    )


def all_drive_norms(stats: Statistics) -> Float[Array, " k"]:
    """||g_m(S)|| for every proper subset S and every m outside it (one member; for the solve
    horizon, docs/theory.md §7): 2^M - 1 restricted solves, M small."""
    n = stats.n_modalities
    out = []
    for bits in itertools.product((False, True), repeat=n):
        if all(bits):
            continue
        norms = block_norms(stats, residual_drive(stats, jnp.asarray(bits)))
        out += [norms[..., m] for m in range(n) if not bits[m]]
    return jnp.stack(out, -1)
