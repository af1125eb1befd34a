"""The solve engine every integrator uses: batch axes, one diffrax solve per member, and the
jit / vmap / shard call.

An integrator (`gradient_flow`, `gradient_descent`, `reduced_flow`) is a thin client: it
validates its inputs, works out which arguments carry the batch (`resolve_batch`), writes the
solve of *one* member as a hashable callable (an `eqx.Module` whose configuration is static),
and hands it to `call`, which vmaps it over the batch and compiles it once per structure, on
one device or split over several (`multimodal_dln._sharding`). The ODE integrators solve with
`integrate`: a diffrax solve that saves `summary(t, y, args)` on a time grid instead of the
state (memory O(batch x n_save x o x d) however large the network), keeps the final state for
continuations, and stops at an optional event, typically `convergence_event`.

Each member has its own adaptive step size and its own while loop, so a vmapped solve steps
until its slowest member is done; `run_in_buckets` groups members of similar predicted duration
to raise the useful-work fraction (docs/theory.md §7).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._exported import call_exported
from ._sharding import run_sharded
from ._status import Status
from ._trajectory import fill_after_end, run_status

__all__ = [
    "Mapped",
    "Segment",
    "call",
    "checks_as_nan",
    "convergence_event",
    "integrate",
    "integrate_with",
    "pad_members",
    "resolve_batch",
    "run_in_buckets",
    "save_grid",
    "saved_to_end",
    "scatter_members",
    "segment_status",
    "take_members",
    "unconverged_members",
]


def save_grid(
    t_max: ArrayLike, n_save: int, t_min_fraction: ArrayLike = 1e-5
) -> Float[Array, " n"]:
    """[0] followed by n_save - 1 log-spaced times from t_min_fraction * t_max to t_max."""
    t_max = jnp.asarray(t_max, dtype=float)
    grid = jnp.exp(jnp.linspace(jnp.log(t_min_fraction * t_max), jnp.log(t_max), n_save - 1))
    grid = jnp.minimum(grid, t_max).at[-1].set(t_max)  # exp/log round-off must not pass t1
    return jnp.concatenate([jnp.zeros((1,), t_max.dtype), grid])


# ---- batch axes ----------------------------------------------------------------------------------
def resolve_batch(sizes: Sequence[tuple[str, int | None]]) -> tuple[int | None, tuple]:
    """The common batch size of the arguments and their vmap axes.

    `sizes` holds one `(what, size)` per argument, `size` its leading batch axis or None when
    it is shared by every member (`what` names it in the error, e.g. "networks"). Returns
    `(batch, axes)`: batch None when nothing is batched, axes 0 (batched) or None per argument.
    """
    present = [(what, n) for what, n in sizes if n is not None]
    for what, n in present[1:]:
        if n != present[0][1]:
            raise ValueError(f"batch sizes differ: {present[0][1]} {present[0][0]} but {n} {what}.")
    batch = present[0][1] if present else None
    return batch, tuple(None if n is None else 0 for _, n in sizes)


# ---- one member's solve --------------------------------------------------------------------------
class Segment(NamedTuple):
    """What `integrate` returns for one member.

    - `saved`: `summary(t, y, args)` at each save time (a pytree, one leading row per time).
    - `reached`: `(n,)` which rows were saved; the others lie past the end of the solve.
    - `y_end`, `t_end`: the state and time where the solve stopped (event or t1).
    - `result`: diffrax's `RESULTS` code; `num_steps`: accepted and rejected steps taken.
    """

    saved: Any
    reached: Bool[Array, " n"]
    y_end: Any
    t_end: Float[Array, ""]
    result: Any
    num_steps: Int[Array, ""]


def integrate(
    field: Callable,
    y0,
    t0,
    t1,
    ts: Float[Array, " n"],
    summary: Callable,
    *,
    solver: diffrax.AbstractSolver,
    rtol: float,
    atol,
    max_steps: int,
    event: diffrax.Event | None = None,
    args=None,
    dt0=None,
) -> Segment:
    """Solve dy/dt = field(t, y, args) from t0 to t1 (adaptive steps, PID controller), saving
    `summary(t, y, args)` at the times `ts` clipped to [t0, t1], and stop early at `event`.

    Never raises on solver failure (`throw=False`): the member's `result` says what happened,
    so one failing member does not fail a batch. Forward-mode adjoint: the solve is not
    differentiated, and the summaries may use `jax.jvp` of the state.
    """
    dtype = jax.tree.leaves(y0)[0].dtype  # the time dtype sets the state dtype (diffrax #349)
    t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=jnp.clip(ts, t0, t1), fn=summary), diffrax.SubSaveAt(t1=True)]
    )
    with checks_as_nan():
        sol = _diffeqsolve(
            field, solver, t0, t1, dt0, y0, args, saveat, rtol, atol, event, max_steps
        )
    saved, y_end = sol.ys
    y_end = jax.tree.map(lambda a: a[0], y_end)
    return Segment(
        saved, jnp.isfinite(sol.ts[0]), y_end, sol.ts[1][0], sol.result, sol.stats["num_steps"]
    )


@contextlib.contextmanager
def checks_as_nan():
    """Trace equinox's runtime checks (`eqx.error_if`) inside the solve as NaN outputs rather
    than host callbacks.

    diffrax checks the (traced) save times with `error_if`; a host callback in an executable
    keeps it out of JAX's persistent compilation cache, so every new process would compile the
    solve again. Our save times are clipped and increasing, so those checks cannot fire; any
    other check that did would give NaN outputs, which `segment_status` flags per member
    (NONFINITE) instead of aborting the batch. Only checks traced inside this context change
    (equinox reads the mode when a check is traced); tests/test_solve_cache.py asserts the
    lowered solve holds no callback.
    """
    import equinox._errors as eqx_errors

    old = eqx_errors.EQX_ON_ERROR
    eqx_errors.EQX_ON_ERROR = "nan"
    try:
        yield
    finally:
        eqx_errors.EQX_ON_ERROR = old


def _diffeqsolve(field, solver, t0, t1, dt0, y0, args, saveat, rtol, atol, event, max_steps):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, t0, t1, dt0, y0, args,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        event=event,
        max_steps=max_steps,
        throw=False,
        adjoint=diffrax.ForwardMode(),
    )  # fmt: skip


def integrate_with(cfg, field: Callable, y0, t0, t1, ts, summary: Callable, *, atol, event=None):
    """`integrate` with the solver, rtol and step budget of a `_config.SolverConfig`."""
    return integrate(
        field, y0, t0, t1, ts, summary, solver=cfg.solver, rtol=cfg.rtol, atol=atol,
        max_steps=cfg.max_steps, event=event,
    )  # fmt: skip


def convergence_event(loss_fn: Callable, l_star, gap0, converge_rtol: float) -> diffrax.Event:
    """Stop once the loss gap L(y) - L* falls to `converge_rtol` x the initial gap `gap0`."""

    def converged(t, y, args, **kwargs):
        return loss_fn(y) - l_star <= converge_rtol * gap0

    return diffrax.Event(converged)


def saved_to_end(seg: Segment, summary: Callable):
    """The (weights, weights_dot, loss) saves of a segment whose `summary` returns that triple,
    with the rows past its end holding the final values (`_trajectory.fill_after_end`)."""
    w_end, _, l_end = summary(seg.t_end, seg.y_end, None)
    w, w_dot, loss = seg.saved
    return fill_after_end(seg.reached, w, w_dot, loss, w_end, l_end)


def segment_status(seg: Segment, *, valid, finite) -> Int[Array, ""]:
    """The member's `Status` after a solve that should end at its convergence event."""
    return run_status(
        invalid=~valid,
        non_finite=~finite,
        diverged=False,
        step_budget=seg.result == diffrax.RESULTS.max_steps_reached,
        not_converged=seg.result != diffrax.RESULTS.event_occurred,
    )


# ---- over members: vmap, jit, shard --------------------------------------------------------------
class Mapped(eqx.Module):
    """`fn` (one member's solve) over a batch: vmapped over the arguments whose entry in `axes`
    is 0 (None: shared), or called as is when `axes` is None. Hashable when `fn` is (a function,
    or an `eqx.Module` with static fields), so each structure compiles once."""

    fn: Callable = eqx.field(static=True)
    axes: tuple | None = eqx.field(static=True)

    @property
    def exportable(self) -> bool:
        """Whether its program may be stored for later processes (`_exported`)."""
        return getattr(self.fn, "exportable", False)

    def __call__(self, *args):
        if self.axes is None:
            return self.fn(*args)
        return eqx.filter_vmap(self.fn, in_axes=self.axes)(*args)


def call(fn: Callable, args: tuple, axes: tuple | None = None, mesh=None):
    """Compile and run `Mapped(fn, axes)(*args)`: on one device, or with the batch split over
    `mesh` (a 1-D mesh from `_sharding.resolve_mesh`; None for one device)."""
    mapped = Mapped(fn, axes)
    if mesh is None or axes is None:
        return call_exported(mapped, args, _call_jit)  # a stored program when `fn` allows it
    size = jax.tree.leaves(args[axes.index(0)])[0].shape[0]
    return run_sharded(mapped, args, axes, size, mesh)


@eqx.filter_jit
def _call_jit(fn, *args):
    return fn(*args)


def take_members(tree, idx, axis):
    """Members `idx` of a batched pytree (`axis` 0), or the shared tree itself (`axis` None)."""
    if axis is None:
        return tree
    return jax.tree.map(lambda a: a[idx] if eqx.is_array(a) else a, tree)


def run_in_buckets(run: Callable, args: tuple, axes: tuple, batch: int, buckets: int, cost):
    """Sort members by predicted `cost`, solve `buckets` equal-size groups one after another
    with `run(args)` (one compiled function: the last group is padded by repeating a member),
    and restore the order.

    A vmapped solve steps until its slowest member is done, so grouping members of similar
    duration raises the useful-work fraction (docs/theory.md §7)."""
    cost = np.asarray(cost, dtype=float)
    if cost.shape != (batch,):
        raise ValueError(f"cost must have one entry per member ({batch}); got shape {cost.shape}.")
    order = np.argsort(cost, kind="stable")
    size = -(-batch // buckets)
    pieces = []
    for start in range(0, batch, size):
        idx = order[start : start + size]
        idx = np.concatenate([idx, np.full(size - idx.size, idx[-1])])
        out = run(
            tuple(take_members(a, jnp.asarray(idx), ax) for a, ax in zip(args, axes, strict=True))
        )
        pieces.append((idx, out))
    flat_idx = np.concatenate([p[0] for p in pieces])
    inverse = np.empty(batch, dtype=np.int64)
    first = np.ones(flat_idx.size, bool)
    first[np.unique(flat_idx, return_index=True)[1]] = False  # padded repeats come later
    positions = np.arange(flat_idx.size)[~first]
    inverse[flat_idx[~first]] = positions
    merged = jax.tree.map(
        lambda *xs: jnp.concatenate(xs, axis=0) if eqx.is_array(xs[0]) else xs[0],
        *[p[1] for p in pieces],
    )
    return jax.tree.map(lambda a: a[jnp.asarray(inverse)] if eqx.is_array(a) else a, merged)


# ---- re-running some members ---------------------------------------------------------------------
def unconverged_members(status) -> np.ndarray:
    """Indices of the members whose status is `NOT_CONVERGED` (the horizon was reached)."""
    return np.flatnonzero(np.atleast_1d(np.asarray(status)) == Status.NOT_CONVERGED)


SAME_SIZE_UP_TO = 64
"""A re-run subset of a batch of at most this many members is padded to the batch's own size:
it reuses the batch's compiled program, and the padding repeats real members, so a vmapped
solve takes no extra steps. Larger batches pad to a power of two (less work per step)."""


def pad_members(todo: np.ndarray, batch: int | None = None) -> jax.Array:
    """The member indices `todo` of a `batch`, padded by repeating the last one to the batch's
    size (up to `SAME_SIZE_UP_TO` members) or to a power of two, so that re-running subsets
    compiles for few distinct batch sizes."""
    if batch is not None and batch <= SAME_SIZE_UP_TO:
        size = batch
    else:
        size = 1 << int(np.ceil(np.log2(todo.size)))
    return jnp.asarray(np.concatenate([todo, np.full(size - todo.size, todo[-1])]))


def scatter_members(full, sub, todo: np.ndarray):
    """`full` with members `todo` replaced by the first `todo.size` members of `sub`."""
    real = jnp.asarray(todo)
    return jax.tree.map(
        lambda a, b: a.at[real].set(b[: todo.size]) if eqx.is_array(a) else a, full, sub
    )
