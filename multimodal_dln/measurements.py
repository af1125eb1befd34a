"""Measurements on trajectories: when each modality is learned, misattribution, plateaus, E_g.

Definitions (Zhang et al. 2024 as measured by the authors; digest 2.3, 2.4, 4.1 F4e):

- t_A: first time ||W_A^tot(t)|| reaches half its unimodal-phase value ||W_A^uni||,
  W_A^uni = Sigma_yxA Sigma_A^+.
- t_B: first time ||W_B^tot(t)|| reaches half its final value ||W_B^tot(t_end)||.
- time ratio t_B / t_A.
- t_uni = (t_A + t_B) / 2, the middle of the unimodal phase;
  misattribution W_A^tot(t_uni) - W_A^tot(t_end) (the authors plot this sign; for the toy
  data it equals rho / ratio, digest 2.4).
- plateau loss: the loss at t_uni.

Crossings are located inside the bracketing grid interval by bisection on the cubic Hermite
interpolant built from the saved values and time derivatives (error O(h^4)), not by an argmin
over the grid as in the authors' `util.time_half`. Choices beyond the digest: "first" crossing
means the first upward crossing; the final value is the last saved value of a converged run.
The definitions assume A is learned first (||Sigma_yxA|| > ||Sigma_yxB||, digest 2.3): with
the modalities the other way round, relabel them. A member is marked unsuccessful when a
threshold is zero or a norm starts above it (no crossing to time).
Frobenius norms are used for vector/matrix weights.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Scalar

from .statistics import Statistics
from .trajectory import Trajectory, hermite_interpolate

__all__ = ["PhaseMeasurements", "crossing_time", "measure", "generalization_error_curve"]


class PhaseMeasurements(eqx.Module):
    """Per-member results of `measure` (arrays; batched like the trajectory)."""

    t_A: Float[Array, "*batch"]
    t_B: Float[Array, "*batch"]
    time_ratio: Float[Array, "*batch"]
    t_uni: Float[Array, "*batch"]
    misattribution: Float[Array, "*batch o dA"]
    plateau_loss: Float[Array, "*batch"]
    initial_loss: Float[Array, "*batch"]
    final_loss: Float[Array, "*batch"]
    success: Bool[Array, "*batch"]


def crossing_time(
    ts: Float[Array, " n"], y: Float[Array, " n"], dy: Float[Array, " n"], threshold: Scalar
) -> Scalar:
    """First time the Hermite interpolant of (ts, y, dy) reaches `threshold` from below.

    Returns `ts[0]` if it starts at or above, NaN if it never reaches it.
    """
    above = y >= threshold
    i = jnp.argmax(above)
    found = jnp.any(above)
    i_lo = jnp.maximum(i - 1, 0)
    t_lo, t_hi = ts[i_lo], ts[i]
    seg_t = jnp.stack([t_lo, t_hi])
    seg_y = jnp.stack([y[i_lo], y[i]])
    seg_dy = jnp.stack([dy[i_lo], dy[i]])

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        up = hermite_interpolate(seg_t, seg_y, seg_dy, mid) >= threshold
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 64, bisect, (t_lo, t_hi))
    t = jnp.where(i == 0, ts[0], 0.5 * (lo + hi))
    return jnp.where(found, t, jnp.nan)


def _measure_one(traj: Trajectory, stats: Statistics) -> PhaseMeasurements:
    n_A, dn_A = traj.norms("A")
    n_B, dn_B = traj.norms("B")
    thr_A = 0.5 * jnp.linalg.norm(stats.unimodal_weights("A"))
    thr_B = 0.5 * n_B[-1]
    t_A = crossing_time(traj.ts, n_A, dn_A, thr_A)
    t_B = crossing_time(traj.ts, n_B, dn_B, thr_B)
    t_A = jnp.where(thr_A > 0, t_A, jnp.nan)
    t_B = jnp.where(thr_B > 0, t_B, jnp.nan)
    t_uni = 0.5 * (t_A + t_B)
    w_uni = hermite_interpolate(traj.ts, traj.W_A, traj.weights_dot[..., : traj.d_A], t_uni)
    misattribution = w_uni - traj.W_A[-1]
    plateau = jnp.interp(t_uni, traj.ts, traj.loss)
    # A zero threshold (W_A^uni = 0, or B never learned) makes a crossing meaningless; a time
    # of 0 means the norm started above the threshold (e.g. B learned before A): not measured.
    ok = traj.success & (thr_A > 0) & (thr_B > 0) & (t_A > 0) & (t_B > 0)
    ok = ok & jnp.isfinite(t_A) & jnp.isfinite(t_B)
    return PhaseMeasurements(
        t_A=t_A,
        t_B=t_B,
        time_ratio=t_B / t_A,
        t_uni=t_uni,
        misattribution=misattribution,
        plateau_loss=plateau,
        initial_loss=traj.loss[0],
        final_loss=traj.loss[-1],
        success=ok,
    )


@eqx.filter_jit
def measure(traj: Trajectory, stats: Statistics) -> PhaseMeasurements:
    """Phase times, time ratio, misattribution and plateau loss for each member.

    `stats` are the statistics the run trained on (for a `Dataset`, pass `data.statistics()`);
    shared or batched like `traj`.
    """
    t_batched = traj.ts.ndim == 2
    if not t_batched:
        return _measure_one(traj, stats)
    s_axis = 0 if stats.sigma_xx.ndim == 3 else None
    return eqx.filter_vmap(_measure_one, in_axes=(eqx.if_array(0), s_axis))(traj, stats)


def generalization_error_curve(
    traj: Trajectory, population: Statistics
) -> Float[Array, "*batch n"]:
    """E_g(t) = 1/2 (W(t) - W*) Sigma (W(t) - W*)^T on the save grid, for population statistics
    (digest 2.8; label noise excluded). `population` may be shared or batched like `traj`."""
    if traj.ts.ndim == 2 and population.sigma_xx.ndim == 3:
        population = jax.tree.map(lambda a: a[:, None], population)
    return population.generalization_error(traj.weights)
