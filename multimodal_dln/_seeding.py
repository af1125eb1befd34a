"""The seed policy: one home for turning integer seeds into PRNG keys.

Member i's key for a stream is

    key_i = jax.random.fold_in(jax.random.key(seed_i), stream_i)

with `NET_STREAM` (0) for network initialization and `DATA_STREAM` (1) for random data
(covariance draws). A member's draws depend on its own seed only, never on its position in a
batch or chunk, so results do not depend on how members are batched (the sweeps and the
experiments rely on this).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["DATA_STREAM", "NET_STREAM", "keys_for"]

NET_STREAM = 0
"""`fold_in` index of the network-initialization stream of a seed."""

DATA_STREAM = 1
"""`fold_in` index of the random-data stream of a seed (e.g. a covariance draw)."""


def keys_for(seeds, streams=NET_STREAM) -> jax.Array:
    """`fold_in(key(seed_i), stream_i)` per member; `streams` broadcasts against `seeds`
    (traceable)."""
    seeds = jnp.asarray(seeds, dtype=jnp.uint32)
    streams = jnp.broadcast_to(jnp.asarray(streams, dtype=jnp.uint32), seeds.shape)
    return jax.vmap(lambda s, i: jax.random.fold_in(jax.random.key(s), i))(seeds, streams)
