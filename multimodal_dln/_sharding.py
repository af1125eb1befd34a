"""Spread a batch of independent members over every device with `jax.shard_map`.

The batch axis is split over a 1-D mesh ("batch") of all devices (`jax.devices()`, which after
`jax.distributed.initialize()` spans every process). Each device runs its own vmapped solve: its
own while loop that stops when *its* members are done, with no cross-device communication per
step. Batches are padded to a multiple of the device count by repeating the last member; the
padding is dropped from the result. Results equal the single-device run (members are
independent), which `tests/test_sharding.py` checks on fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`).

Several processes (`jax.process_count() > 1`, multi-controller JAX): every process holds the
same host data (construction is deterministic) and runs the same calls. A process can only
write and read the shards on its own devices, so the inputs become global arrays built from that
host data (`jax.make_array_from_callback`: each process fills its own shards, no communication),
and the outputs are gathered at the end of the call (one all-gather program; on CPU through
JAX's cross-process collectives, gloo by default) into ordinary single-device arrays holding
the full batch on every process. Host-side decisions taken on results (which members to run
again, which status a member has) are then identical on every process, so they keep making
the same calls. `tests/test_multiprocess.py` runs two processes on one machine. With one
process none of this runs: the code path is the one above.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

AXIS = "batch"


def resolve_mesh(shard, batch: int | None):
    """`shard`: "auto" (all devices when there are several and a batch), True, False/None, or a
    1-D `jax.sharding.Mesh`. Returns a Mesh or None."""
    if shard is None or shard is False or batch is None:
        return None
    if isinstance(shard, jax.sharding.Mesh):
        if shard.axis_names != (AXIS,):
            raise ValueError(
                f"shard mesh must be 1-D with axis name {AXIS!r}; got axes {shard.axis_names}."
            )
        return shard if shard.size > 1 else None
    if shard not in ("auto", True):
        raise ValueError(
            f"shard must be 'auto', True, False or a jax.sharding.Mesh; got {shard!r}."
        )
    n = jax.device_count()
    if n == 1:
        return None
    return make_mesh(n)


def make_mesh(n_devices: int | None = None):
    """A 1-D mesh named "batch" over the first `n_devices` devices (default: all), with
    automatic (GSPMD) axis semantics: only the batch axis is split, by `shard_map` below."""
    n = jax.device_count() if n_devices is None else n_devices
    try:
        return jax.make_mesh((n,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    except (AttributeError, TypeError):  # jax without axis types
        return jax.make_mesh((n,), (AXIS,))


def _pad(tree, axis, target):
    if axis is None:
        return tree

    def pad_leaf(a):
        if not eqx.is_array(a):
            return a
        n = a.shape[0]
        if n == target:
            return a
        return jnp.concatenate([a, jnp.repeat(a[-1:], target - n, axis=0)], axis=0)

    return jax.tree.map(pad_leaf, tree)


def run_sharded(fn: eqx.Module, args: tuple, axes: tuple, batch: int, mesh):
    """Evaluate `fn(*args)` with the batch split over `mesh`.

    `fn` is a hashable callable (an `eqx.Module` whose configuration is static), already vmapped
    over the leading axis of the arguments whose entry in `axes` is 0 (None: shared). Its output
    arrays must all carry the batch as leading axis. Compiled once per (fn, mesh, shapes).
    With several processes the inputs are placed as global arrays and the outputs gathered
    (module docstring), so every process returns the full batch.
    """
    n_dev = mesh.size
    target = -(-batch // n_dev) * n_dev
    args = tuple(_pad(a, ax, target) for a, ax in zip(args, axes, strict=True))
    dyn, stat = eqx.partition(args, eqx.is_array)
    several = jax.process_count() > 1
    put = _put_global if several else jax.device_put
    placed = tuple(
        jax.tree.map(lambda a: put(a, NamedSharding(mesh, _spec(ax))), d)
        for d, ax in zip(dyn, axes, strict=True)
    )
    out = _sharded_call(fn, mesh, axes, placed, stat)
    if several:
        out = gather(out, mesh)
    if target != batch:
        out = jax.tree.map(lambda a: a[:batch] if eqx.is_array(a) else a, out)
    return out


def _spec(ax):
    return PartitionSpec(AXIS) if ax == 0 else PartitionSpec()


@eqx.filter_jit
def _sharded_call(fn, mesh, axes, dyn, stat):
    specs = tuple(jax.tree.map(lambda _: _spec(ax), d) for d, ax in zip(dyn, axes, strict=True))

    def local(*d):
        return eqx.filter(fn(*eqx.combine(d, stat)), eqx.is_array)

    kwargs = dict(mesh=mesh, in_specs=specs, out_specs=PartitionSpec(AXIS))
    try:
        mapped = jax.shard_map(local, check_vma=False, **kwargs)
    except TypeError:  # older spelling of the replication check
        mapped = jax.shard_map(local, check_rep=False, **kwargs)
    out_dyn = mapped(*dyn)
    # Non-array parts of the output, from a shape-only trace on unsharded abstract inputs.
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), dyn)
    out_static = eqx.partition(
        eqx.filter_eval_shape(fn, *eqx.combine(abstract, stat)), eqx.is_array
    )[1]
    return eqx.combine(out_dyn, out_static)


# ---- several processes ---------------------------------------------------------------------------
def _put_global(a, sharding: NamedSharding):
    """`a` (the same host value on every process) as an array laid out by `sharding`, which
    may span other processes' devices: each process copies in the slices of its own devices.
    `jax.device_put` would also check, with one collective per array, that every process holds
    the same value; the values here are built deterministically, so that check is skipped."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        return jax.device_put(a, sharding)  # already global: a reshard among the same devices
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _identity(tree):
    return tree


def gather(tree, mesh):
    """`tree` with every array that spans several processes replaced by the full array, on one
    local device of each process (ordinary, fully addressable arrays).

    One jitted identity whose outputs are replicated over `mesh` (an all-gather, a collective
    every process must enter: on CPU JAX's gloo collectives, over the `jax.distributed`
    coordinator's processes); other leaves pass through unchanged."""

    def spread(a):
        return isinstance(a, jax.Array) and not a.is_fully_addressable

    dyn, rest = eqx.partition(tree, spread)
    replicated = NamedSharding(mesh, PartitionSpec())
    full = jax.jit(_identity, out_shardings=replicated)(dyn)
    return eqx.combine(jax.tree.map(lambda a: a.addressable_data(0), full), rest)


def is_main_process() -> bool:
    """Whether this is process 0: the one process that writes files (a sweep's store)."""
    return jax.process_index() == 0


def from_main_process(values: np.ndarray) -> np.ndarray:
    """Process 0's `values` on every process (as is with one process): a decision taken where
    only process 0 can take it (it alone opens a sweep's store), so that every process then
    makes the same calls. Every process must call it, with an array of the same shape."""
    if jax.process_count() == 1:
        return np.asarray(values)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(values)))
