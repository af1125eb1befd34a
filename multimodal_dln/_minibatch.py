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

__all__ = ["fori_minibatches", "minibatch_indices", "noise_scale", "take"]


def _epoch_permutation(key: PRNGKeyArray, epoch, n: int) -> Int[Array, " n"]:
    return jax.random.permutation(jax.random.fold_in(key, epoch), n)


def _slot(perm, step, m: int, b: int):
    return jax.lax.dynamic_slice(perm, ((step % m) * b,), (b,))


def minibatch_indices(key: PRNGKeyArray, step, n: int, b: int) -> Int[Array, " b"]:
    """The sample indices step `step` uses (module docstring); traceable in `step` and `key`."""
    m = n // b
    return _slot(_epoch_permutation(key, step // m, n), step, m, b)


def take(data: Dataset, idx) -> Dataset:
    """The samples `idx` of `data`."""
    return Dataset(data.x_A[idx], data.x_B[idx], data.y[idx])


def fori_minibatches(lo, hi, n: int, b: int, key: PRNGKeyArray, body, carry):
    """`carry = body(idx_k, carry)` for the steps k = lo, ..., hi - 1 in order, `idx_k` being
    `minibatch_indices(key, k, n, b)`: the same indices, but each epoch's permutation is drawn
    once for the steps of that epoch in [lo, hi), not once per step (an epoch loop around a step
    loop; traceable and vmappable in `lo`, `hi` and `key`). Drawing the permutation (a sort of
    n random keys) took ~60 % of an SGD step of a small network (n = 256, b = 1 or 16)."""
    m = n // b

    def epoch(e, c):
        perm = _epoch_permutation(key, e, n)
        k0, k1 = jnp.maximum(lo, e * m), jnp.minimum(hi, (e + 1) * m)
        return jax.lax.fori_loop(k0, k1, lambda k, cc: body(_slot(perm, k, m, b), cc), c)

    e_end = jnp.where(hi > lo, (hi - 1) // m + 1, lo // m)  # no epoch when the range is empty
    return jax.lax.fori_loop(lo // m, e_end, epoch, carry)


def noise_scale(b, n):
    """sqrt((n - b) / (b (n - 1))): the standard deviation of a without-replacement minibatch
    mean relative to that of one sample (module docstring); 0 at b = n."""
    b = jnp.asarray(b, dtype=float)
    return jnp.sqrt((n - b) / (b * (n - 1)))
