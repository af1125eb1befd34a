"""The toy data's parameters and moments (`Statistics.toy`; Zhang et al. 2024, docs/theory.md
§1): validation with one-line errors, the moments as one compiled program, and which parameter
overflowed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import (
    _show,
    broadcast_members,
    check_finite,
    check_open_interval,
    check_positive,
    is_traced,
)

__all__ = ["modal_args", "modal_moments", "toy_args", "toy_moments", "toy_overflow"]

_TOY_NAMES = ("rho", "ratio", "noise", "w_A", "w_B")


def toy_args(rho, ratio, noise, w_A, w_B):
    """Validated toy parameters as float arrays of one shape, () or (n,)."""
    vals = (
        check_open_interval("rho", rho, -1.0, 1.0),
        check_positive("ratio", ratio),
        check_positive("noise", noise, allow_zero=True),
        check_finite("w_A", w_A),
        check_finite("w_B", w_B),
    )
    return broadcast_members(_TOY_NAMES, [jnp.asarray(v, dtype=float) for v in vals])


@jax.jit  # one compiled program per shape (op by op: ~30 small ones)
def toy_moments(rho, ratio, noise, w_A, w_B):
    """(Sigma_xx, Sigma_yx, w Sigma_xx w^T, noise^2) of the toy data (`Statistics.toy`)."""
    c = rho * ratio
    row_A = jnp.stack([ratio**2, c], axis=-1)
    row_B = jnp.stack([c, jnp.ones_like(c)], axis=-1)
    sigma_xx = jnp.stack([row_A, row_B], axis=-2)
    w = jnp.stack([w_A, w_B], axis=-1)[..., None, :]
    sigma_yx = w @ sigma_xx
    return sigma_xx, sigma_yx, w @ sigma_xx @ jnp.swapaxes(w, -1, -2), noise**2


def toy_overflow(args, bad) -> str:
    """Which toy parameter made the first bad member's moments overflow."""
    vals = [np.asarray(a) for a in args]
    i = tuple(int(k) for k in np.argwhere(bad)[0]) if np.ndim(bad) else ()
    at = {n: f"{n}{list(i) if i else ''} = {_show(v[i])}" for n, v in zip(_TOY_NAMES, vals)}
    big = float(np.sqrt(np.finfo(vals[1].dtype).max))
    with np.errstate(over="ignore"):
        square_ok = [bool(np.isfinite(vals[k][i] ** 2)) for k in (1, 2)]
    if not square_ok[0]:
        return f"{at['ratio']} gives a non-finite Var(x_A) = ratio^2; " + (
            f"ratio must be finite, > 0 and below {big:.3g}."
        )
    if not square_ok[1]:
        return f"{at['noise']} gives a non-finite label-noise variance noise^2; " + (
            f"noise must be finite, >= 0 and below {big:.3g}."
        )
    return (
        f"{at['w_A']} and {at['w_B']} (with {at['ratio']}, {at['noise']}) give a non-finite "
        "E[y x] or E[y^2] (overflow); lower |w_A|, |w_B|, ratio or noise."
    )


def modal_args(scales, correlations, teacher, noise):
    """Validated (scales (..., M), correlations (..., M, M), teacher (..., M), noise (...)) of
    `Statistics.toy_modalities` as float arrays; concrete values raise one-line errors."""
    scales = jnp.asarray(check_positive("scales", scales), dtype=float)
    if scales.ndim < 1 or scales.shape[-1] < 2:
        raise ValueError(
            f"scales must hold one standard deviation per modality (M >= 2); got shape "
            f"{scales.shape}."
        )
    m = scales.shape[-1]
    corr = jnp.asarray(check_finite("correlations", correlations), dtype=float)
    if corr.shape[-2:] != (m, m):
        raise ValueError(
            f"correlations must be an (M, M) = ({m}, {m}) matrix; got shape {corr.shape}."
        )
    if not is_traced(corr):
        c = np.asarray(corr)
        unit = np.allclose(np.diagonal(c, 0, -2, -1), 1.0)
        if not (np.allclose(c, np.swapaxes(c, -1, -2)) and unit):
            raise ValueError(
                "correlations must be symmetric with a unit diagonal; got "
                f"{np.round(c, 4).tolist()}."
            )
        low = np.linalg.eigvalsh(c).min()
        if low < -1e-12:
            raise ValueError(
                "correlations must be positive semi-definite (a correlation matrix); smallest "
                f"eigenvalue {low:.3g}."
            )
    teacher = jnp.ones_like(scales) if teacher is None else jnp.asarray(teacher, dtype=float)
    teacher = check_finite("teacher", teacher)
    if teacher.shape[-1:] != (m,):
        raise ValueError(f"teacher must hold M = {m} weights; got shape {teacher.shape}.")
    noise = jnp.asarray(check_positive("noise", noise, allow_zero=True), dtype=float)
    return scales, corr, teacher, noise


@jax.jit
def modal_moments(scales, corr, teacher, noise):
    """(Sigma_xx = D R D, Sigma_yx = w^T Sigma_xx, w^T Sigma_xx w, noise^2) (`toy_modalities`)."""
    sigma_xx = scales[..., :, None] * corr * scales[..., None, :]
    w = teacher[..., None, :]
    sigma_yx = w @ sigma_xx
    return sigma_xx, sigma_yx, w @ sigma_xx @ jnp.swapaxes(w, -1, -2), noise**2
