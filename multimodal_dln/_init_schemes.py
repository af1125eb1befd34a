"""The initialization schemes of `FusionDLN.init` (docs/theory.md §1, §3, §9).

Each scheme returns the network's arrays as ``(branches, fusion, shared)``: per modality m the
tuple of its L_f - 1 branch layers, per modality its column block of the fusion layer, and the
L - L_f shared layers. With M modalities the per-layer scale u0 means:

- ``"aligned"``: balanced rank-one layers W_l = s_l q_l q_{l-1}^T (unit vectors q), s_l = u0
  for every branch layer and each modality's fusion block, s_l = sqrt(M) u0 for the shared
  layers (balance: W_{l+1}^T W_{l+1} = W_l W_l^T needs s^2 = sum over the M blocks). Given
  `align_to` statistics the output direction is the top left singular vector of
  W* = Sigma_yx Sigma_xx^+ and modality m's input direction its block of q_out^T W*.
- ``"random"``: the authors' deep Gaussian scheme, N(0, std^2) with std = u0 / sqrt(numel) for
  branch layers and sqrt(M) u0 / sqrt(numel) for the whole fusion layer and the shared layers
  (each modality's block of the fusion layer then has norm ~ u0).
- ``"entrywise"``: every entry N(0, u0^2) (the authors' two-layer classes).

For M = 2 (sqrt(M) = sqrt(2)) the keys are split and consumed in the order the two-modality
network always used, so its draws are unchanged bit for bit.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp

from . import _linalg

__all__ = ["aligned_layers", "gaussian_layers"]


def _unit(key, n):
    v = jax.random.normal(key, (n,))
    return v / jnp.linalg.norm(v)


def gaussian_layers(key, dims, L, Lf, d_in, u0, init):
    """The "random" and "entrywise" schemes; `dims[l]` is layer l's output size (l = 1..L) and
    `d_in` the modalities' input sizes."""
    n_mod = len(d_in)
    keys = iter(jax.random.split(key, n_mod * L + 2))

    def in_dim(k, d):
        return d if k == 1 else dims[k - 1]

    def gauss(shape, std):
        return std * jax.random.normal(next(keys), shape)

    def std_for(shape, factor):
        if init == "entrywise":
            return u0
        return factor * u0 / math.sqrt(shape[0] * shape[1])

    branches = tuple(
        tuple(gauss(s, std_for(s, 1.0)) for s in [(dims[k], in_dim(k, d)) for k in range(1, Lf)])
        for d in d_in
    )
    shapes = [(dims[Lf], in_dim(Lf, d)) for d in d_in]
    root = math.sqrt(float(n_mod))
    fstd = std_for((dims[Lf], sum(s[1] for s in shapes)), root)
    fusion = tuple(gauss(s, fstd) for s in shapes)
    shared = tuple(
        gauss((dims[k], dims[k - 1]), std_for((dims[k], dims[k - 1]), root))
        for k in range(Lf + 1, L + 1)
    )
    return branches, fusion, shared


def _directions(align_to, d_in, in_keys, out_key, n_out):
    """(q_out, [v_m]): along the solution W* = Sigma_yx Sigma_xx^+ when `align_to` is given.

    A rank-one branch cannot change sign, so aligning with W* (not with the initial drive
    Sigma_yx, which differs in sign when a modality's correlation has the other sign,
    docs/theory.md §2) is what lets the path reach the solution."""
    if align_to is None:
        return _unit(out_key, n_out), [_unit(k, d) for k, d in zip(in_keys, d_in, strict=True)]
    w_star = align_to.optimal_weights()
    u_svd, _, _ = _linalg.svd(w_star)
    q_out = u_svd[:, 0]
    q_out = q_out * jnp.where(jnp.sum(q_out) < 0, -1.0, 1.0)

    def in_dir(block, fallback_key, n):
        v = q_out @ block
        nv = jnp.linalg.norm(v)
        return jnp.where(nv > 0, v / jnp.where(nv > 0, nv, 1.0), _unit(fallback_key, n))

    starts = [0, *itertools.accumulate(d_in)]
    return q_out, [
        in_dir(w_star[:, starts[m] : starts[m + 1]], in_keys[m], d) for m, d in enumerate(d_in)
    ]


def aligned_layers(key, dims, L, Lf, d_in, scales, align_to):
    """The "aligned" scheme; `scales = (u0, rows)` with `rows` None (balanced) or the (L,) /
    (M, L) per-layer multipliers (docs/theory.md §9)."""
    u0, rows = scales
    n_mod = len(d_in)
    rows = None if rows is None else jnp.broadcast_to(rows, (n_mod, L))

    def s(m, k):  # layer k's scale for modality m; u0 itself when balanced
        return u0 if rows is None else u0 * rows[m, k - 1]

    keys = jax.random.split(key, n_mod + 2)
    q_out, v = _directions(align_to, d_in, keys[:n_mod], keys[n_mod + 1], dims[L])
    hkeys = iter(jax.random.split(keys[n_mod], n_mod * L + 2))
    # Hidden unit vectors: per-branch below the fusion layer, shared above it.
    q = [[v[m]] + [_unit(next(hkeys), dims[k]) for k in range(1, Lf)] for m in range(n_mod)]
    q_sh = {k: _unit(next(hkeys), dims[k]) for k in range(Lf, L)}
    q_sh[L] = q_out
    branches = tuple(
        tuple(s(m, k) * jnp.outer(q[m][k], q[m][k - 1]) for k in range(1, Lf)) for m in range(n_mod)
    )
    fusion = tuple(s(m, Lf) * jnp.outer(q_sh[Lf], q[m][Lf - 1]) for m in range(n_mod))
    root = jnp.sqrt(float(n_mod))
    shared = tuple(root * s(0, k) * jnp.outer(q_sh[k], q_sh[k - 1]) for k in range(Lf + 1, L + 1))
    return branches, fusion, shared
