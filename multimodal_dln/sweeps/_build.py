"""Sweep members to batched inputs: the data (toy, random covariances, or rows of a supplied
batch) and the networks, in one compiled call per structure.

Seed policy (`multimodal_dln._seeding`): member i's network is drawn from
``fold_in(key(seed_i), NET_STREAM)`` and a random covariance from
``fold_in(key(draw_i), DATA_STREAM)``, so a member's inputs depend on its own axis values only,
never on its position in a chunk or on the other members of the sweep.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._network import FusionDLN
from .._seeding import DATA_STREAM, keys_for
from .._statistics import Statistics
from .._training import statistics_of

__all__ = ["build_inputs", "traced_values"]

_TRACED = ("rho", "ratio", "w_A", "w_B", "noise", "draw", "scale_A", "scale_B", "data_index",
           "init_scale", "lr", "t_max", "seed")  # fmt: skip


def traced_values(members) -> dict[str, np.ndarray]:
    """The traced axes of `members` as arrays (None -> 0: such an axis is unused there)."""
    out = {}
    for name in _TRACED:
        vals = [m[name] for m in members]
        dtype = np.uint32 if name in ("draw", "seed", "data_index") else np.float64
        out[name] = np.asarray([0 if v is None else v for v in vals], dtype=dtype)
    return out


def _data(structure: dict, v: dict, user):
    kind = structure["data"]
    if kind == "toy":
        stats = jax.vmap(lambda r, k, n, a, b: Statistics.toy(r, k, n, w_A=a, w_B=b))(
            v["rho"], v["ratio"], v["noise"], v["w_A"], v["w_B"]
        )
        return stats, stats
    if kind == "random":
        d_A, d_B, d_out = structure["d_A"], structure["d_B"], structure["d_out"]

        def one(key, sa, sb, n):
            return Statistics.random(key, d_A, d_B, d_out, scale_A=sa, scale_B=sb, noise=n)

        stats = jax.vmap(one)(keys_for(v["draw"], DATA_STREAM), v["scale_A"], v["scale_B"],
                              v["noise"])  # fmt: skip
        return stats, stats
    objective = jax.tree.map(lambda a: a[v["data_index"]], user)
    return objective, jax.vmap(statistics_of)(objective)


@eqx.filter_jit
def _build(structure_items: tuple, v: dict, user):
    structure = dict(structure_items)
    objective, stats = _data(structure, v, user)
    if not structure["networks"]:  # the reduced dynamics
        return objective, stats, None

    def one(key, u, s):
        return FusionDLN.init(
            key,
            depth=structure["depth"],
            fusion_layer=structure["fusion_layer"],
            width=structure["width"],
            d_A=s.d_A,
            d_B=s.sigma_xx.shape[-1] - s.d_A,
            d_out=s.sigma_yx.shape[-2],
            init_scale=u,
            init=structure["init"],
            align_to=s if structure["init"] == "aligned" else None,
            activation=structure["activation"],
        )

    # lax.map, not vmap: the same draws (threefry is per key), but XLA compiles the batched
    # threefry of a vmap 2x slower, and the build's compile is what a new structure waits for
    # (4.2 -> 1.9 s for 4 width-8 networks; building 1,024 width-100 depth-4 networks: first
    # call 9.5 -> 7.0 s, a rebuild 2.1 -> 2.7 s, measured on 2 CPU cores)
    nets = jax.lax.map(lambda a: one(*a), (keys_for(v["seed"]), v["init_scale"], stats))
    return objective, stats, nets


def build_inputs(structure: dict, members, user=None):
    """``(objective, stats, nets, values)`` for members sharing `structure` (the static axes):
    the objective each is trained on (`Statistics`, or a `Dataset` for a supplied dataset),
    its statistics, the networks (None for the reduced dynamics) and the traced values."""
    v = traced_values(members)
    jv = {k: jnp.asarray(a) for k, a in v.items()}
    objective, stats, nets = _build(_build_key(structure), jv, user)
    return objective, stats, nets, v


_NOT_BUILT_FROM = ("method", "rtol", "n_save", "auto_horizon")  # settings of the solve only
_DATA_KEYS = ("data", "d_A", "d_B", "d_out")  # all the data depend on


def _build_key(structure: dict) -> tuple:
    """The static part of `_build`: only what the data and networks depend on, so structures
    that differ in solver settings alone (method, rtol, n_save, horizon) share one compiled
    build, and a build of the data alone (the reduced dynamics, the cost prediction) one per
    kind of data."""
    networks = structure.get("method") != "reduced"
    keep = (lambda k: k not in _NOT_BUILT_FROM) if networks else _DATA_KEYS.__contains__
    items = [(k, v) for k, v in structure.items() if keep(k)]
    return tuple(sorted(items)) + (("networks", networks),)
