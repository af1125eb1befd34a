"""The experiments' one batch builder: toy statistics, networks per member, padding.

Seed policy (the library's, `multimodal_dln._seeding`): member i's network is drawn from

    key_i = jax.random.fold_in(jax.random.key(seed_i), stream_i)

with `stream_i = NET_STREAM` (0) unless the caller names another stream. With the default a
member's network depends on its seed only, never on its position in a batch or chunk, so a
result does not depend on the chunk size or on which other members share its solve (the sweep
store relies on this; `mdln sweep` / `mdln simulate` use it). An experiment that wants distinct
draws for members sharing a seed passes `streams` (e.g. the member index).

API
---
- `network_keys(seeds, streams=NET_STREAM)`: the keys above, one per member (traceable).
- `toy_statistics(rho, ratio, noise=0.0)`: a batch of `Statistics.toy` (Zhang et al. 2024,
  toy data; docs/theory.md §1), one member per entry.
- `init_networks(keys, stats, init_scale, depth=, fusion_layer=, width=, init=, ...)`: one
  `FusionDLN` per member (`eqx.filter_vmap` of `FusionDLN.init`); the input sizes come from
  `stats`, and `init="aligned"` aligns each network with its own member's statistics.
- `toy_batch(seeds, rho, ratio, init_scale, depth=, fusion_layer=, width=, init=, noise=)`:
  `(nets, stats)` for toy members in one compiled call (the structure is static, the values
  are not: new values do not recompile).
- `pad(tree, size)`: every array leaf of a pytree padded along its leading axis to `size` by
  repeating the last member (so solves keep their shapes and are not recompiled);
  `pad_list(items, size)` the same for a list (e.g. of member configurations);
  `bucket(n)`: the padded size for n members (the next of 8, 16, ..., 1024, then powers of 2);
  `concat(trees)`: batches joined along the leading axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import FusionDLN, Statistics
from .._seeding import NET_STREAM, keys_for

__all__ = [
    "NET_STREAM",
    "bucket",
    "concat",
    "init_networks",
    "network_keys",
    "pad",
    "pad_list",
    "toy_batch",
    "toy_statistics",
]

BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024)


def network_keys(seeds, streams=NET_STREAM) -> jax.Array:
    """`fold_in(key(seed_i), stream_i)` per member (the library's seed policy,
    `multimodal_dln._seeding.keys_for`); `streams` broadcasts against `seeds`."""
    return keys_for(seeds, streams)


def toy_statistics(rho, ratio, noise=0.0) -> Statistics:
    """A batch of toy statistics (one member per entry of the broadcast arguments)."""
    rho, ratio, noise = jnp.broadcast_arrays(
        jnp.asarray(rho, float), jnp.asarray(ratio, float), jnp.asarray(noise, float)
    )
    return jax.vmap(Statistics.toy)(rho, ratio, noise)


def init_networks(
    keys,
    stats: Statistics,
    init_scale,
    *,
    depth: int,
    fusion_layer: int,
    width: int | np.integer | Sequence[int] | np.ndarray,
    init: str = "random",
    d_out: int = 1,
    activation: str = "linear",
) -> FusionDLN:
    """One network per member from its key, statistics (sizes; alignment for "aligned") and
    init scale u0 (a scalar or one per member)."""
    n = keys.shape[0]
    u0 = jnp.broadcast_to(jnp.asarray(init_scale, float), (n,))

    def one(key, u, s):
        return FusionDLN.init(
            key,
            depth=depth,
            fusion_layer=fusion_layer,
            width=width,
            d_A=stats.d_A,
            d_B=stats.d_B,
            d_out=d_out,
            init_scale=u,
            init=init,
            align_to=s if init == "aligned" else None,
            activation=activation,
        )

    return eqx.filter_vmap(one)(keys, u0, stats)


@eqx.filter_jit
def _toy_batch(seeds, rhos, ratios, noises, u0s, depth, fusion_layer, width, init):
    stats = jax.vmap(Statistics.toy)(rhos, ratios, noises)
    nets = init_networks(
        network_keys(seeds),
        stats,
        u0s,
        depth=depth,
        fusion_layer=fusion_layer,
        width=width,
        init=init,
    )
    return nets, stats


def toy_batch(
    seeds,
    rho,
    ratio,
    init_scale,
    *,
    depth: int,
    fusion_layer: int,
    width: int,
    init: str = "random",
    noise: float = 0.0,
) -> tuple[FusionDLN, Statistics]:
    """`(nets, stats)` for toy members (per-member seeds, rho, ratio, u0; shared structure and
    noise), built in one compiled call."""
    seeds = jnp.asarray(seeds, dtype=jnp.uint32)
    n = seeds.shape[0]
    as_f = lambda v: jnp.broadcast_to(jnp.asarray(v, dtype=float), (n,))  # noqa: E731
    return _toy_batch(
        seeds,
        as_f(rho),
        as_f(ratio),
        jnp.full((n,), float(noise)),
        as_f(init_scale),
        depth,
        fusion_layer,
        width,
        init,
    )


def pad_list(items: Sequence, size: int | None) -> list:
    """`items` as a list padded to `size` by repeating its last item (unchanged when it has
    at least `size` items, or `size` is None)."""
    if size is None or len(items) >= size:
        return list(items)
    return list(items) + [items[-1]] * (size - len(items))


def pad(x, size: int | None):
    """A pytree whose array leaves are padded along their leading axis to `size` members by
    repeating the last member (leaves that already have `size` are unchanged)."""

    def one(a):
        n = a.shape[0]
        if size is None or n >= size:
            return a
        return jnp.concatenate([a, jnp.repeat(a[-1:], size - n, axis=0)])

    return jax.tree.map(lambda a: one(a) if eqx.is_array(a) else a, x)


def bucket(n: int, sizes: Sequence[int] = BUCKETS) -> int:
    """The smallest of `sizes` that holds n members, else the next power of two."""
    for s in sizes:
        if n <= s:
            return s
    return int(2 ** math.ceil(math.log2(n)))


def concat(trees):
    """Batches joined along the leading axis (non-array leaves from the first tree)."""
    return jax.tree.map(lambda *a: jnp.concatenate(a) if eqx.is_array(a[0]) else a[0], *trees)
