"""Validity of second-order statistics: finite, Sigma_xx symmetric PSD, and a PSD label-noise
covariance (the statistics of *some* joint distribution; docs/theory.md §1). One-line errors
for concrete statistics, a traceable per-member flag for traced ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from ._statistics import Statistics
from ._validation import is_traced, psd_ok

__all__ = ["label_noise_covariance", "statistics_valid", "validate_statistics"]


def label_noise_covariance(stats: Statistics) -> Float[Array, "*batch o o"]:
    """Sigma_yy - Sigma_yx Sigma_xx^+ Sigma_yx^T, plus a 1e-9 (max|Sigma_yy| + 1) ridge per member
    (the tolerance for noiseless statistics, where it is zero up to round-off)."""
    resid = stats.sigma_yy - stats.optimal_weights() @ jnp.swapaxes(stats.sigma_yx, -1, -2)
    ridge = 1e-9 * (jnp.max(jnp.abs(stats.sigma_yy), axis=(-2, -1)) + 1.0)
    return resid + ridge[..., None, None] * jnp.eye(stats.d_out, dtype=resid.dtype)


def _conditions(stats: Statistics, require_full_rank: bool = False):
    """(ok per member for each condition, in the order they are reported; the smallest
    eigenvalues of sigma_xx and of the label-noise covariance, which the messages quote)."""
    oks = [
        jnp.all(jnp.isfinite(getattr(stats, name)), axis=(-2, -1))
        for name in ("sigma_xx", "sigma_yx", "sigma_yy")
    ]
    ok, eig = psd_ok(stats.sigma_xx, semi=not require_full_rank)
    syy = stats.sigma_yy
    asym = jnp.max(jnp.abs(syy - jnp.swapaxes(syy, -1, -2)), axis=(-2, -1))
    sym = asym <= 1e-8 * jnp.max(jnp.abs(syy), axis=(-2, -1))
    resid = label_noise_covariance(stats)
    resid = 0.5 * (resid + jnp.swapaxes(resid, -1, -2))
    ok_r, eig_r = psd_ok(resid, semi=True)
    return oks + [ok, sym, ok_r], (eig, eig_r)


# Concrete statistics are checked by one compiled program per shape and dtype (op by op, the
# checks compiled ~50 small XLA programs, 4 s before a first solve could start).
_conditions_jit = jax.jit(_conditions, static_argnums=1)


def _messages(require_full_rank: bool):
    """The reason per condition of `_conditions`, as functions of (member, eig, eig_r)."""
    kind = "positive definite" if require_full_rank else "positive semi-definite"

    def finite(name):
        return lambda i, e, r: f"{name} contains NaN or inf; it must be finite"

    return [
        finite("sigma_xx"),
        finite("sigma_yx"),
        finite("sigma_yy"),
        lambda i, e, r: (
            f"sigma_xx (input covariance) must be symmetric and {kind} "
            f"(smallest eigenvalue {float(e[i]):.3g})"
        ),
        lambda i, e, r: "sigma_yy (output second moment) must be symmetric",
        lambda i, e, r: (
            "sigma_yy - sigma_yx sigma_xx^+ sigma_yx^T (label-noise covariance) "
            f"must be positive semi-definite (smallest eigenvalue {float(r[i]):.3g})"
        ),
    ]


def statistics_valid(stats: Statistics) -> Bool[Array, "*batch"]:
    """Traceable per-member validity: every entry finite; Sigma_xx symmetric (rel. 1e-8) and
    PSD (smallest eigenvalue >= -1e-12 x scale in float64, -1e-5 x scale in float32); Sigma_yy
    symmetric; and the label-noise covariance Sigma_yy - Sigma_yx Sigma_xx^+ Sigma_yx^T PSD with
    the same tolerances (after a 1e-9 ridge, see `label_noise_covariance`)."""
    ok = jnp.ones(stats.batch_shape, dtype=bool)
    for cond in _conditions(stats)[0]:
        ok = ok & cond
    return ok


def validate_statistics(stats: Statistics, *, require_full_rank: bool = False) -> Statistics:
    """Check values: finite, Sigma_xx symmetric PSD (PD if `require_full_rank`), and
    Sigma_yy - Sigma_yx Sigma_xx^+ Sigma_yx^T PSD (the statistics of *some* joint distribution).

    Concrete statistics raise a one-line `ValueError` (naming the first bad member of a batch);
    traced ones are returned unchanged: use `statistics_valid` to flag bad members there.
    """
    if not isinstance(stats, Statistics):
        raise TypeError(f"statistics must be a Statistics; got {type(stats).__name__}.")
    if 0 in stats.batch_shape:
        raise ValueError(
            "statistics batch has 0 members; a batch needs at least one "
            f"(batch shape {stats.batch_shape})."
        )
    if is_traced(stats):
        return stats
    oks, (eig, eig_r) = jax.device_get(_conditions_jit(stats, require_full_rank))
    bad = ~np.logical_and.reduce([np.asarray(ok) for ok in oks])
    if not bad.any():
        return stats
    i = tuple(int(k) for k in np.argwhere(bad)[0]) if bad.ndim else ()
    messages = _messages(require_full_rank)
    msg = next(m(i, eig, eig_r) for ok, m in zip(oks, messages, strict=True) if not ok[i])
    if not i:
        raise ValueError(msg + ".")
    k = int(bad.sum())
    count = f" ({k} of {bad.size} members are invalid)" if k > 1 else ""
    raise ValueError(f"statistics member {', '.join(map(str, i))}: {msg}{count}.")
