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
from jaxtyping import Array, Bool, Float, Int

__all__ = ["Trajectory", "hermite_interpolate"]


class Trajectory(eqx.Module):
    """Summaries of one run, or of a batch of runs (a leading batch axis on every array).

    **Fields:**

    - `ts`: `(n,)` save times in gradient-flow time units (tau = 1; for GD, t = steps x lr).
    - `weights`: `(n, o, d)` effective weights [W_A^tot, W_B^tot] at `ts`.
    - `weights_dot`: `(n, o, d)` their time derivative (for Hermite interpolation).
    - `loss`: `(n,)` training loss at `ts`.
    - `t_end`: time the run stopped (convergence, or the horizon `t_max`).
    - `converged`: the loss gap fell below the convergence tolerance.
    - `solver_ok`: the integrator (or GD) finished without error (no max_steps, no NaN, no divergence).
    - `num_steps`: integrator steps (GD: steps) taken.
    - `final`: the final network (full weights), or None.
    - `d_A`: size of modality A (static).

    Save slots after `t_end` hold the final values (the dynamics has stopped there).
    """

    ts: Float[Array, "*batch n"]
    weights: Float[Array, "*batch n o d"]
    weights_dot: Float[Array, "*batch n o d"]
    loss: Float[Array, "*batch n"]
    t_end: Float[Array, "*batch"]
    converged: Bool[Array, "*batch"]
    solver_ok: Bool[Array, "*batch"]
    num_steps: Int[Array, "*batch"]
    final: eqx.Module | None
    d_A: int = eqx.field(static=True)

    @property
    def finite(self) -> Bool[Array, "*batch"]:
        """Every saved weight and loss value is finite."""
        return jnp.all(jnp.isfinite(self.weights), axis=(-3, -2, -1)) & jnp.all(
            jnp.isfinite(self.loss), axis=-1
        )

    @property
    def success(self) -> Bool[Array, "*batch"]:
        """Solver finished cleanly, the loss converged, and every saved value is finite."""
        return self.solver_ok & self.converged & self.finite

    @property
    def W_A(self) -> Float[Array, "*batch n o dA"]:
        return self.weights[..., : self.d_A]

    @property
    def W_B(self) -> Float[Array, "*batch n o dB"]:
        return self.weights[..., self.d_A :]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.ts.shape[:-1]

    def norms(self, modality: str) -> tuple[Float[Array, "*batch n"], Float[Array, "*batch n"]]:
        """(||W_m^tot(t)||_F, d/dt ||W_m^tot(t)||_F) on the grid, m in {"A", "B"}."""
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
        """One human-readable status per member ("ok", or why it failed)."""
        import numpy as np

        flags = [np.atleast_1d(np.asarray(a)) for a in (self.solver_ok, self.converged, self.finite)]
        out = []
        for ok, conv, fin in zip(*flags, strict=True):
            if not ok:
                out.append("solver failed (max_steps reached, non-finite values, or GD diverged)")
            elif not conv:
                out.append("did not converge before t_max (raise t_max)")
            elif not fin:
                out.append("non-finite values in the saved summaries")
            else:
                out.append("ok")
        return out

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
