"""What a training run keeps: cheap summaries on a time grid, and per-member status flags.

Saving only the effective weights W^tot(t) = [W_A^tot, W_B^tot], their time derivative and the
loss keeps memory at O(batch x n_save x o x d) however wide or deep the network is. The saved
derivative makes a cubic Hermite interpolant of W^tot(t) between grid points, accurate to
O(h^4), which is what the phase-time measurements use (no argmin over a grid).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._status import Status, describe

__all__ = ["Trajectory", "fill_after_end", "hermite_interpolate", "run_status"]


def run_status(
    *, invalid, non_finite, diverged, step_budget, not_converged
) -> Int[Array, "*batch"]:
    """Combine per-member failure conditions into one `Status` code (the first that holds, in
    the order of the arguments; `Status.OK` when none does)."""
    conds = [invalid, non_finite, diverged, step_budget, not_converged]
    codes = [
        Status.INVALID_INPUT,
        Status.NON_FINITE,
        Status.DIVERGED,
        Status.STEP_BUDGET,
        Status.NOT_CONVERGED,
    ]
    out = jnp.asarray(Status.OK, jnp.int32)
    for cond, code in reversed(list(zip(conds, codes, strict=True))):
        out = jnp.where(cond, jnp.asarray(code, jnp.int32), out)
    return out


class Trajectory(eqx.Module):
    """Summaries of one run, or of a batch of runs (a leading batch axis on every array).

    **Fields:**

    - `ts`: `(n,)` save times in gradient-flow time units (tau = 1; for GD, t = steps x lr).
    - `weights`: `(n, o, d)` effective weights [W_A^tot, W_B^tot] at `ts`.
    - `weights_dot`: `(n, o, d)` their time derivative (for Hermite interpolation).
    - `loss`: `(n,)` training loss at `ts`.
    - `t_end`: time the run stopped (convergence, or the horizon `t_max`).
    - `status`: per-member `Status` code: `Status.OK` when the loss gap fell below the
      convergence tolerance with every value finite; otherwise why not (invalid input,
      non-finite values, GD divergence, step budget, horizon reached).
    - `num_steps`: integrator steps (GD: steps) taken.
    - `final`: the final network (full weights), or None.
    - `d_A`: size of modality A (static).
    - `method`: "flow", "gd", "sgd" (minibatches) or "reduced" (static; selects the remedy in
      `failure_reasons`).
    - `fusion_layer`: the network's L_f when known statically (None otherwise); `measure`
      requires t_A <= t_B only where a unimodal phase is predicted (L_f >= 2).
    - `weight_decay`: the lambda the run trained with, per member (docs/theory.md §8), or None
      without weight decay; `measure` takes the regularized targets from it.

    Save slots after `t_end` hold the final values (the dynamics has stopped there).
    """

    ts: Float[Array, "*batch n"]
    weights: Float[Array, "*batch n o d"]
    weights_dot: Float[Array, "*batch n o d"]
    loss: Float[Array, "*batch n"]
    t_end: Float[Array, "*batch"]
    status: Int[Array, "*batch"]
    num_steps: Int[Array, "*batch"]
    final: eqx.Module | None
    d_A: int = eqx.field(static=True)
    method: str = eqx.field(static=True, default="flow")
    fusion_layer: int | None = eqx.field(static=True, default=None)
    weight_decay: Float[Array, "*batch"] | None = None

    @property
    def converged(self) -> Bool[Array, "*batch"]:
        """The loss gap fell below the convergence tolerance (and nothing failed)."""
        return self.status == Status.OK

    @property
    def solver_ok(self) -> Bool[Array, "*batch"]:
        """No input, numerical, divergence or step-budget failure (the horizon may be reached)."""
        return (self.status == Status.OK) | (self.status == Status.NOT_CONVERGED)

    @property
    def finite(self) -> Bool[Array, "*batch"]:
        """Every saved weight and loss value is finite."""
        return jnp.all(jnp.isfinite(self.weights), axis=(-3, -2, -1)) & jnp.all(
            jnp.isfinite(self.loss), axis=-1
        )

    @property
    def success(self) -> Bool[Array, "*batch"]:
        """The run converged cleanly (`status == Status.OK`; non-finite saves are NON_FINITE)."""
        return self.status == Status.OK

    @property
    def W_A(self) -> Float[Array, "*batch n o dA"]:
        return self.weights[..., : self.d_A]

    @property
    def W_B(self) -> Float[Array, "*batch n o dB"]:
        return self.weights[..., self.d_A :]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.ts.shape[:-1]

    def norms(
        self, modality: str | slice
    ) -> tuple[Float[Array, "*batch n"], Float[Array, "*batch n"]]:
        """(||W_m^tot(t)||_F, d/dt ||W_m^tot(t)||_F) on the grid, m in {"A", "B"} or the slice
        of m's input coordinates (`Statistics.modality_slices`, M modalities)."""
        if isinstance(modality, slice):
            sl = modality
        else:
            sl = slice(None, self.d_A) if modality == "A" else slice(self.d_A, None)
        w, wd = self.weights[..., sl], self.weights_dot[..., sl]
        nrm = jnp.sqrt(jnp.sum(w**2, axis=(-2, -1)))
        dnrm = jnp.sum(w * wd, axis=(-2, -1)) / jnp.where(nrm > 0, nrm, 1.0)
        return nrm, dnrm

    def __getitem__(self, idx) -> Trajectory:
        """Select batch members (e.g. `traj[3]`, `traj[mask]`)."""
        arrays, static = eqx.partition(self, eqx.is_array)
        arrays = jax.tree.map(lambda a: a[idx], arrays)
        return eqx.combine(arrays, static)

    def failure_reasons(self) -> list[str]:
        """One line per member: "ok", or why it failed and what to change."""
        return [describe(c, self.method) for c in np.atleast_1d(np.asarray(self.status)).ravel()]


def fill_after_end(saved, w, w_dot, loss, w_end, loss_end):
    """Complete the saves of a run that stopped before the last save time: slots not reached
    (`saved` False) hold the final values with zero derivative (the dynamics has stopped).
    A crossing interpolated past the end is refused by `measure` (`NO_CROSSING`).

    (Moving the first unreached slot to t_end itself would bracket late crossings better, but
    t_end is the end of the step that met the convergence test, so two exact solvers of the
    same flow then bracket differently; measured 1.5e-4 between a network and its reduced
    dynamics at L = 4. It needs the event time located by root finding first.)"""
    col = (...,) + (None,) * (w.ndim - 1)
    w = jnp.where(saved[col], w, w_end)
    w_dot = jnp.where(saved[col], w_dot, 0.0)
    loss = jnp.where(saved, loss, loss_end)
    return w, w_dot, loss


def hermite_interpolate(ts, ys, dys, t):
    """Cubic Hermite interpolation of samples `ys` (with derivatives `dys`) at times `ts`.

    `ts` is `(n,)` increasing; `ys`, `dys` are `(n, ...)`; `t` a scalar. Outside the grid the end
    values are returned. Pure and vmappable.
    """
    n = ts.shape[0]
    i = jnp.clip(jnp.searchsorted(ts, t, side="right") - 1, 0, n - 2)
    t0, t1 = ts[i], ts[i + 1]
    h = t1 - t0
    s = jnp.clip((t - t0) / jnp.where(h > 0, h, 1.0), 0.0, 1.0)
    h00 = 2 * s**3 - 3 * s**2 + 1
    h10 = s**3 - 2 * s**2 + s
    h01 = -2 * s**3 + 3 * s**2
    h11 = s**3 - s**2
    return h00 * ys[i] + h10 * h * dys[i] + h01 * ys[i + 1] + h11 * h * dys[i + 1]
