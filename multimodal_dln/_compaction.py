"""Chunked solves with compaction: no member-steps spent on members that are already done.

A vmapped diffrax solve is one while loop for the whole batch: it steps until its slowest member
is done, and a finished member is masked, not removed, so its share of every later step is
wasted (on a heterogeneous toy batch only ~45 % of member-steps are useful; docs/theory.md §7).
Here each member's solve runs in chunks of at most `chunk_steps` steps, and between chunks the
members that are done (event, end of the horizon, failure or step budget) leave the batch.

A chunk continues the solve exactly where the previous one stopped: the state, time, solver
state (e.g. Tsit5's first-same-as-last stage), step-size controller state and `made_jump` are
forwarded (diffrax's `SaveAt(solver_state=True, controller_state=True, made_jump=True)`, the
chaining patrick-kidger describes in diffrax issue #740), and so is the step size the
controller proposed last, which diffrax does not return: `_ChainablePID` carries it in the
controller state. The chained solve takes the same steps as the one-shot solve
(tests/test_compaction.py: identical step counts and saves).

Members enter a pool of fixed size (`_Pool`): a finished member's slot goes to the next waiting
member, so no recompile is needed while members wait; when none waits, the pool shrinks by
powers of two. Cost model (`compacted_work`): a chunk costs (its batch size) x (the most steps
any member of it took), so the useful-work fraction sum_i steps_i / sum_chunks size x steps is
a function of the members' step counts alone, like the buckets' (`benchmarks/compaction.py`
measures both).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from diffrax._term import WrapTerm  # what diffeqsolve wraps terms in (see `start`)
from jaxtyping import Array, Bool, Float, Int

from ._solve import Segment, checks_as_nan, take_members
from ._validation import check_positive_int

__all__ = [
    "Resumable",
    "advance",
    "compacted_work",
    "pool_size_for",
    "run_compacted",
    "start",
    "to_segment",
]


class _ChainablePID(diffrax.AbstractAdaptiveStepSizeController):
    """`diffrax.PIDController` whose state also holds the step size it proposes next, so that
    a solve can be continued with the step the one-shot solve would take (`dt0` of the next
    chunk). Steps, errors and results are the PID controller's own."""

    pid: diffrax.PIDController

    @property
    def rtol(self):
        return self.pid.rtol

    @property
    def atol(self):
        return self.pid.atol

    @property
    def norm(self):
        return self.pid.norm

    def wrap(self, direction):
        return _ChainablePID(self.pid.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.pid.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return tnext, (state, tnext - t0)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        keep, next_t0, next_t1, jump, inner, result = self.pid.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state[0]
        )
        return keep, next_t0, next_t1, jump, (inner, next_t1 - next_t0), result


class Resumable(NamedTuple):
    """One member's solve between chunks.

    - `y`, `t`: state and time reached; `dt`: the step size proposed next.
    - `solver_state`, `controller_state`, `made_jump`: diffrax's, forwarded to the next chunk.
    - `saved`, `reached`: the summaries saved so far (one row per save time) and which rows.
    - `num_steps`: steps taken so far; `result`: diffrax's result of the last chunk
      (`max_steps_reached` while the member is still running).
    """

    y: Any
    t: Float[Array, ""]
    dt: Float[Array, ""]
    solver_state: Any
    controller_state: Any
    made_jump: Bool[Array, ""]
    saved: Any
    reached: Bool[Array, " n"]
    num_steps: Int[Array, ""]
    result: Any


def _controller(rtol, atol):
    return _ChainablePID(diffrax.PIDController(rtol=rtol, atol=atol))


def start(field: Callable, y0, t0, t1, ts, summary: Callable, *, solver, rtol, atol, args=None):
    """The state before the first chunk, initialized as `diffeqsolve` initializes a solve
    from y0 at t0 (first step size from the controller, the solver's initial state)."""
    dtype = jax.tree.leaves(y0)[0].dtype
    t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
    # diffeqsolve wraps the term for the direction of time, and the wrapped term changes the
    # controller's first step (diffrax's `_select_initial_step`): wrap it the same way.
    terms = WrapTerm(diffrax.ODETerm(field), jnp.asarray(1))
    ctrl = _controller(rtol, atol).wrap(jnp.asarray(1))
    tnext, cstate = ctrl.init(terms, t0, t1, y0, None, args, solver.func, solver.error_order(terms))
    tnext = jnp.minimum(tnext, t1)
    shapes = jax.eval_shape(summary, t0, y0, args)
    n = ts.shape[0]
    return Resumable(
        y=y0,
        t=t0,
        dt=tnext - t0,
        solver_state=solver.init(terms, t0, tnext, y0, args),
        controller_state=jax.tree.map(jnp.asarray, cstate),  # arrays, to be vmapped
        made_jump=jnp.asarray(False),
        saved=jax.tree.map(lambda s: jnp.zeros((n,) + s.shape, s.dtype), shapes),
        reached=jnp.zeros((n,), bool),
        num_steps=jnp.zeros((), int),
        result=diffrax.RESULTS.max_steps_reached,
    )


@eqx.filter_jit
def running(state: Resumable, max_steps: int):
    """Whether the member still has steps to take: its last chunk stopped at the chunk's step
    limit, and its total is below the budget `max_steps`."""
    return (state.result == diffrax.RESULTS.max_steps_reached) & (state.num_steps < max_steps)


def advance(
    field: Callable, state: Resumable, t1, ts, summary: Callable, *, solver, rtol, atol,
    steps: int, max_steps: int, event=None, args=None,
) -> Resumable:  # fmt: skip
    """At most `steps` more steps of the member's solve towards t1, saving `summary` at the
    save times `ts` it passes; a member that is not running is returned unchanged."""
    go = running(state, max_steps)
    t1 = jnp.where(go, jnp.asarray(t1, state.t.dtype), state.t)  # done: an empty solve
    saveat = diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(ts=jnp.clip(ts, state.t, t1), fn=summary),
            diffrax.SubSaveAt(t1=True),
        ],
        solver_state=True,
        controller_state=True,
        made_jump=True,
    )
    with checks_as_nan():
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field), solver, state.t, t1, state.dt, state.y, args,
            saveat=saveat, stepsize_controller=_controller(rtol, atol), event=event,
            max_steps=steps, throw=False, adjoint=diffrax.ForwardMode(),
            solver_state=state.solver_state, controller_state=state.controller_state,
            made_jump=state.made_jump,
        )  # fmt: skip
    new_saved, y_end = sol.ys
    new_reached = jnp.isfinite(sol.ts[0])
    keep_old = state.reached

    def merge(old, new):
        return jnp.where(keep_old.reshape(keep_old.shape + (1,) * (old.ndim - 1)), old, new)

    moved = Resumable(
        y=jax.tree.map(lambda a: a[0], y_end),
        t=sol.ts[1][0],
        dt=sol.controller_state[1],
        solver_state=sol.solver_state,
        controller_state=sol.controller_state,
        made_jump=jnp.asarray(sol.made_jump),
        saved=jax.tree.map(merge, state.saved, new_saved),
        reached=keep_old | new_reached,
        num_steps=state.num_steps + sol.stats["num_steps"],
        result=sol.result,
    )
    return jax.tree.map(lambda new, old: jnp.where(go, new, old), moved, state)


def to_segment(state: Resumable) -> Segment:
    """The member's finished solve as `integrate` would have returned it."""
    return Segment(state.saved, state.reached, state.y, state.t, state.result, state.num_steps)


class _Pool:
    """Which members each chunk solves. A pool of `size` slots (at most `pool`) holds running
    members in submission order; a finished member's slot goes to the next waiting member at
    the end of the chunk. Once no member waits, the pool shrinks to the next power of two of
    the members left (not below `min_size`), so the tail compiles for few sizes."""

    def __init__(self, members, batch: int, pool: int, min_size: int):
        self.queue = collections.deque(int(i) for i in members)
        self.slots: list[int] = []
        self.size = min(batch, pool)
        self.min_size = min_size

    def next(self) -> np.ndarray | None:
        """The members of the next chunk, padded to the pool size by repeating the last
        (None when every member is done); the first `len(self.slots)` are real."""
        while len(self.slots) < self.size and self.queue:
            self.slots.append(self.queue.popleft())
        if not self.slots:
            return None
        if not self.queue:
            fit = 1 << int(np.ceil(np.log2(len(self.slots))))
            self.size = min(self.size, max(min(self.min_size, self.size), fit))
        pad = [self.slots[-1]] * (self.size - len(self.slots))
        return np.asarray(self.slots + pad)

    def keep(self, still: np.ndarray):
        """Drop the members of the last chunk that are done (`still` False)."""
        self.slots = [m for m, s in zip(self.slots, still, strict=True) if s]


def run_compacted(
    advance_fn: Callable, is_running: Callable, inputs: tuple, axes: tuple, state: Any,
    batch: int, pool: int, min_size: int = 8,
) -> Any:  # fmt: skip
    """Advance every member chunk by chunk until none is running; each chunk solves only
    running members, `pool` at a time (`_Pool`: finished members' slots refilled, then a
    shrinking tail).

    `inputs` are the members' other arguments (`axes`: 0 batched, None shared), `state` their
    batched state (a `Resumable`, or any pytree of arrays with the batch axis first);
    `advance_fn(inputs, state) -> state` advances a batch by one chunk and `is_running(state)`
    says which members still run. Returns the final states."""
    slots = _Pool(np.flatnonzero(np.asarray(is_running(state))), batch, pool, min_size)
    while (idx := slots.next()) is not None:
        n, at = len(slots.slots), jnp.asarray(idx)
        sub, sub_state = _gather(inputs, axes, state, at)
        moved = advance_fn(sub, sub_state)
        # Padding repeats the last member, whose copies compute the same values: scattering the
        # whole chunk (fixed shapes: one compiled gather and scatter per pool size) is exact.
        state = _scatter(state, at, moved)
        slots.keep(np.asarray(is_running(moved))[:n])
    return state


@eqx.filter_jit
def _gather(inputs, axes, state, at):
    sub = tuple(take_members(a, at, ax) for a, ax in zip(inputs, axes, strict=True))
    return sub, take_members(state, at, 0)


@eqx.filter_jit
def _scatter(state, at, moved):
    return jax.tree.map(lambda a, b: a.at[at].set(b) if eqx.is_array(a) else a, state, moved)


def compacted_work(steps, chunk_steps: int, pool: int, min_size: int = 8) -> int:
    """Member-steps `run_compacted` performs for members that take `steps` steps in all: each
    chunk costs its size x the most steps one of its members takes in it (at most
    `chunk_steps`), as a vmapped while loop does. The useful-work fraction is
    sum(steps) / compacted_work(...)."""
    left = np.asarray(steps, dtype=np.int64).copy()
    slots = _Pool(np.arange(left.size), left.size, pool, min_size)
    work = 0
    while (idx := slots.next()) is not None:
        real = np.asarray(slots.slots)
        taken = np.minimum(left[real], chunk_steps)
        work += idx.size * int(taken.max())
        left[real] -= taken
        slots.keep(left[real] > 0)
    return work


def pool_size_for(pool_size: int | None, batch: int) -> int:
    """The compaction pool: `pool_size` if given, else a quarter of the batch rounded up to a
    power of two (at least 8)."""
    if pool_size is not None:
        return check_positive_int("pool_size", pool_size)
    return max(8, 1 << int(math.ceil(math.log2(max(1, batch / 4)))))
