"""Finite data sets: samples of the two modalities and the target.

Needed where second moments are not enough (nonlinear networks) or where finite-sample effects
are the point (under- vs over-parametrized regimes, Zhang et al. 2024;
docs/theory.md §5). For linear networks,
`Dataset.statistics()` gives the exact empirical statistics, so training on them is identical
to full-batch training on the samples.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from . import _linalg
from ._statistics import Statistics
from ._statistics_checks import validate_statistics
from ._validation import check_positive_int, check_sample_counts, finite_members

__all__ = ["Dataset", "dataset_valid", "sample"]


class Dataset(eqx.Module):
    """n samples: `x_A` `(n, d_A)`, `x_B` `(n, d_B)`, `y` `(n, o)` (with leading batch axes
    for a batch of data sets, e.g. from `jax.vmap(sample)`)."""

    x_A: Float[Array, "*batch n dA"]
    x_B: Float[Array, "*batch n dB"]
    y: Float[Array, "*batch n o"]

    def __check_init__(self):
        for name in ("x_A", "x_B", "y"):
            a = getattr(self, name)
            dtype, shape = getattr(a, "dtype", None), getattr(a, "shape", ())
            real = dtype is not None and (
                jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
            )
            if not real or len(shape) < 2:
                raise ValueError(
                    f"{name} must be a real array of shape (n, k) (n samples); got "
                    f"{type(a).__name__} of dtype {dtype} and shape {shape}."
                )
        check_sample_counts(self.x_A, self.x_B, self.y)

    @property
    def n(self) -> int:
        return self.x_A.shape[-2]

    def statistics(self) -> Statistics:
        """Empirical second moments (see `Statistics.from_samples`)."""
        return Statistics.from_samples(self.x_A, self.x_B, self.y)


def dataset_valid(data: Dataset) -> Bool[Array, "*batch"]:
    """Traceable per-member validity of a (batch of) data set(s): every entry finite."""
    return jnp.asarray(finite_members((data.x_A, data.x_B, data.y)))


def sample(key: PRNGKeyArray, stats: Statistics, n: int) -> Dataset:
    """Draw n i.i.d. Gaussian samples whose population statistics are `stats` (one member:
    vmap over statistics and keys for a batch).

    x ~ N(0, Sigma_xx), y = W* x + eps with W* = Sigma_yx Sigma_xx^+ and
    eps ~ N(0, Sigma_yy - W* Sigma_xx W*^T) (the label noise implied by the statistics).
    """
    n = check_positive_int("n (number of samples)", n)
    if not isinstance(stats, Statistics):
        raise ValueError(f"stats must be a Statistics; got {type(stats).__name__}.")
    if stats.batch_shape:
        raise ValueError(
            "stats must be one member (vmap sample over a batch); "
            f"got batch shape {stats.batch_shape}."
        )
    stats = validate_statistics(stats)
    k_x, k_e = jax.random.split(key)

    def sqrt_psd(m):
        lam, vec = _linalg.eigh(0.5 * (m + m.T))
        return vec * jnp.sqrt(jnp.clip(lam, 0.0, None))

    x = jax.random.normal(k_x, (n, stats.d)) @ sqrt_psd(stats.sigma_xx).T
    w_star = stats.optimal_weights()
    noise_cov = stats.sigma_yy - w_star @ stats.sigma_xx @ w_star.T
    y = x @ w_star.T + jax.random.normal(k_e, (n, stats.d_out)) @ sqrt_psd(noise_cov).T
    return Dataset(x[:, : stats.d_A], x[:, stats.d_A :], y)
