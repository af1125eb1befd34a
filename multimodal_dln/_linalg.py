"""Dense linear algebra that cannot deadlock XLA's CPU thread pool.

On CPU, jaxlib's batched LAPACK kernels (eigh, svd, LU, ...) split a batch whose work exceeds
about 2e5 flops into chunks, schedule the chunks on XLA's intra-op thread pool and block until
they finish (`ParallelBatchMap` in jaxlib's `lapack_kernels.cc`). The kernel itself already runs
on a thread of that pool. When as many such kernels run at once as the pool has threads (two
independent batched eigendecompositions on a 2-core machine suffice), every thread waits for
chunks that no free thread can run, and the computation never returns: the process sits idle
in `block_until_ready`. We met this in the test suite (a 200-member random-covariance solve;
native stacks showed both `tf_XLAEigen` threads in `BlockingCounter::Wait` under
`lapack_dsyevd_ffi`); it depends on thread scheduling, so it struck about one full-suite run
in three.

The functions here apply the LAPACK routine one matrix at a time on CPU: leading batch axes
and `vmap` batch axes become a sequential `lax.map`, so every kernel call sees a batch of one,
never schedules work on the pool, and cannot wait on it. The matrices this package factorizes
are small (covariances of the inputs, d <= a few hundred) and are factorized once per solve
or measurement, so the sequential loop costs little next to the ODE solve. On GPU/TPU the
plain batched routines are used.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = ["eigh", "eigvalsh", "inv", "pinv", "pinv_hermitian", "svd"]


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def _one_at_a_time(fn: Callable, core_ndim: int) -> Callable:
    """`fn` on single matrices (core_ndim trailing axes), mapped sequentially over any leading
    batch axes and over vmap batch axes (a custom vmap rule that lowers to `lax.map`)."""
    mapped = custom_vmap(fn)

    def body(xs):
        return mapped(*xs)

    # one jitted function object, so eager calls on a concrete batch compile once per shape
    over_batch = jax.jit(lambda *flat: lax.map(body, flat))

    @mapped.def_vmap
    def _rule(axis_size, in_batched, *args):
        args = tuple(
            a if b else jnp.broadcast_to(a, (axis_size, *jnp.shape(a)))
            for a, b in zip(args, in_batched, strict=True)
        )
        out = lax.map(body, args)
        return out, jax.tree.map(lambda _: True, out)

    def call(*args):
        if not _on_cpu():
            return fn(*args)
        batch = jnp.shape(args[0])[: jnp.ndim(args[0]) - core_ndim]
        if not batch:
            return mapped(*args)
        flat = tuple(jnp.reshape(a, (-1, *jnp.shape(a)[len(batch) :])) for a in args)
        out = over_batch(*flat)
        return jax.tree.map(lambda o: jnp.reshape(o, (*batch, *o.shape[1:])), out)

    return call


eigh = _one_at_a_time(lambda m: tuple(jnp.linalg.eigh(m)), 2)
eigh.__doc__ = "`jnp.linalg.eigh` (eigenvalues ascending, eigenvectors), one matrix at a time."

eigvalsh = _one_at_a_time(lambda m: jnp.linalg.eigvalsh(m), 2)
eigvalsh.__doc__ = "`jnp.linalg.eigvalsh` (ascending), one matrix at a time."

inv = _one_at_a_time(lambda m: jnp.linalg.inv(m), 2)
inv.__doc__ = "`jnp.linalg.inv`, one matrix at a time."

pinv = _one_at_a_time(lambda m: jnp.linalg.pinv(m), 2)
pinv.__doc__ = "`jnp.linalg.pinv` (via the SVD), one matrix at a time."

pinv_hermitian = _one_at_a_time(lambda m: jnp.linalg.pinv(m, hermitian=True), 2)
pinv_hermitian.__doc__ = "`jnp.linalg.pinv(m, hermitian=True)`, one matrix at a time."

svd = _one_at_a_time(lambda m: tuple(jnp.linalg.svd(m, full_matrices=False)), 2)
svd.__doc__ = "`jnp.linalg.svd(m, full_matrices=False)` (U, S, Vh), one matrix at a time."
