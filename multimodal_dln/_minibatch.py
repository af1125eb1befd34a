"""Minibatch SGD: which samples a step uses (docs/theory.md §10).

Step k of SGD with batch size b on n samples uses the b samples at positions
(k mod m) b, ..., (k mod m) b + b - 1 of a fresh random permutation of the n samples drawn once
per epoch e = floor(k / m), m = floor(n / b) steps per epoch (shuffled epochs, the last n - m b
samples of each permutation left out of that epoch, PyTorch's `drop_last`). The permutation of
epoch e is `jax.random.permutation(fold_in(key, e), n)`, so a member's minibatches depend on its
key only. b = n is full-batch gradient descent exactly (no permutation is drawn).

The minibatch gradient is unbiased; without replacement its covariance is

    Cov[g_b] = (n - b) / (b (n - 1)) S,    S = the covariance of the per-sample gradients,

(the finite-population correction), which vanishes at b = n: to leading order in the noise the
spread of any smooth function of the SGD trajectory scales with sqrt((n - b) / (b (n - 1))).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, PRNGKeyArray

from ._dataset import Dataset

__all__ = ["minibatch", "minibatch_indices", "noise_scale"]


def minibatch_indices(key: PRNGKeyArray, step, n: int, b: int) -> Int[Array, " b"]:
    """The sample indices step `step` uses (module docstring); traceable in `step` and `key`."""
    m = n // b
    perm = jax.random.permutation(jax.random.fold_in(key, step // m), n)
    return jax.lax.dynamic_slice(perm, ((step % m) * b,), (b,))


def minibatch(data: Dataset, key: PRNGKeyArray, step, b: int) -> Dataset:
    """The `b` samples of `data` that step `step` uses; `data` itself when b = n."""
    if b == data.n:
        return data
    idx = minibatch_indices(key, step, data.n, b)
    return Dataset(data.x_A[idx], data.x_B[idx], data.y[idx])


def noise_scale(b, n):
    """sqrt((n - b) / (b (n - 1))): the standard deviation of a without-replacement minibatch
    mean relative to that of one sample (module docstring); 0 at b = n."""
    b = jnp.asarray(b, dtype=float)
    return jnp.sqrt((n - b) / (b * (n - 1)))
