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
)

__all__ = ["toy_args", "toy_moments", "toy_overflow"]

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
