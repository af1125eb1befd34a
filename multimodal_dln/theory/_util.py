"""Small helpers shared by the closed forms of `multimodal_dln.theory` (not public)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

from .._statistics import Statistics
from .._validation import check, check_positive


def _f(x) -> Array:
    """`x` as a float array (float64 when JAX's 64-bit mode is on)."""
    return jnp.asarray(x, dtype=float)


def _norm(a) -> Array:
    """Frobenius norm over the last two axes (row vectors for a scalar output)."""
    return jnp.linalg.norm(a, axis=(-2, -1))


def _is_scalar(stats: Statistics) -> bool:
    return stats.d_A == 1 and stats.d_B == 1 and stats.d_out == 1


def _sign(x):
    """sign(x) with sign(0) = +1."""
    return jnp.where(x < 0, -1.0, 1.0)


def _check_u0(u0):
    """The per-layer initialization scale u0 of the small-init theory must lie in (0, 1)."""
    u0 = check_positive("init_scale (u0)", u0)
    return check(
        u0,
        jnp.asarray(u0) >= 1.0,
        f"init_scale (u0) must lie in (0, 1) for the small-init theory; got {u0!r}.",
    )
