"""Measurements on trajectories: when each modality is learned, misattribution, plateaus, E_g.

Definitions (Zhang et al. 2024 as measured by the authors; docs/theory.md §7, §2, §4):

- t_A: first time ||W_A^tot(t)|| reaches half its unimodal-phase value ||W_A^uni||,
  W_A^uni = Sigma_yxA Sigma_A^+.
- t_B: first time ||W_B^tot(t)|| reaches half its final value ||W_B^tot(t_end)||.
- time ratio t_B / t_A.
- t_uni = (t_A + t_B) / 2, the middle of the unimodal phase;
  misattribution W_A^tot(t_uni) - W_A^tot(t_end) (the authors plot this sign; for the toy
  data it equals rho / ratio, docs/theory.md §4).
- plateau loss: the loss at t_uni.

Crossings are located inside the bracketing grid interval by bisection on the cubic Hermite
interpolant built from the saved values and time derivatives (error O(h^4)), not by an argmin
over the grid as in the authors' `util.time_half`. Choices beyond the paper: "first" crossing
means the first upward crossing; the final value is the last saved value of a converged run.
The definitions assume A is learned first (||Sigma_yxA|| > ||Sigma_yxB||, docs/theory.md §1): with
the modalities the other way round, relabel them. `measure` states the checks a member must
pass to be reported as a success; every other member has NaN phase times and a `Status`.
Frobenius norms are used for vector/matrix weights.

With weight decay lambda > 0 (recorded by the run in `Trajectory.weight_decay`;
docs/theory.md §8) the targets are the regularized ones: t_A is the first time ||W_A^tot||
reaches half the regularized unimodal value ||W_A^{uni,lambda}|| (where late fusion sits while B
is small), and B is learned when its final weight reaches the stated fraction of its block of
the regularized minimum W^lambda (zero above late fusion's threshold: MODALITY_NOT_LEARNED).
t_B is still the half-rise to B's own final value. Members with lambda = 0 are measured exactly
as without it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Scalar

from ._loss import regularized_minimum, regularized_unimodal
from ._statistics import Statistics, require_two_modalities
from ._statistics_checks import validate_statistics
from ._status import Status, describe
from ._trajectory import Trajectory, hermite_interpolate

__all__ = ["PhaseMeasurements", "crossing_time", "measure", "generalization_error_curve"]


class PhaseMeasurements(eqx.Module):
    """Per-member results of `measure` (arrays; batched like the trajectory).

    `status` is a `Status` code per member; every phase quantity (t_A, t_B, time_ratio, t_uni,
    misattribution, plateau_loss) of a member whose status is not `Status.OK` is NaN.
    """

    t_A: Float[Array, "*batch"]
    t_B: Float[Array, "*batch"]
    time_ratio: Float[Array, "*batch"]
    t_uni: Float[Array, "*batch"]
    misattribution: Float[Array, "*batch o dA"]
    plateau_loss: Float[Array, "*batch"]
    initial_loss: Float[Array, "*batch"]
    final_loss: Float[Array, "*batch"]
    status: Int[Array, "*batch"]
    method: str = eqx.field(static=True, default="flow")

    @property
    def success(self) -> Bool[Array, "*batch"]:
        return self.status == Status.OK

    def failure_reasons(self) -> list[str]:
        """One line per member: "ok", or why the measurement failed and what to change."""
        return [describe(c, self.method) for c in np.atleast_1d(np.asarray(self.status)).ravel()]


class _Crossing(NamedTuple):
    t: Scalar
    bracket: Scalar  # length of the save interval that holds the crossing


def _crossing(ts, y, dy, threshold) -> _Crossing:
    threshold = jnp.asarray(threshold, y.dtype)  # stats may be float64 for a float32 run
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
    return _Crossing(jnp.where(found, t, jnp.nan), t_hi - t_lo)


def crossing_time(
    ts: Float[Array, " n"], y: Float[Array, " n"], dy: Float[Array, " n"], threshold: Scalar | float
) -> Scalar:
    """First time the Hermite interpolant of (ts, y, dy) reaches `threshold` from below.

    Returns `ts[0]` if it starts at or above, NaN if it never reaches it.
    """
    return _crossing(ts, y, dy, threshold).t


def _first_failure(pairs) -> Int[Array, ""]:
    """The code of the first condition that holds, `Status.OK` if none."""
    out = jnp.asarray(Status.OK, jnp.int32)
    for cond, code in reversed(pairs):
        out = jnp.where(cond, jnp.asarray(code, jnp.int32), out)
    return out


_ORDER_MARGIN = 1.5  # ||Sigma_yxA|| / ||Sigma_yxB|| above which t_B < t_A is refused


def _targets(stats: Statistics, lam, structure):
    """(W_A^uni, W*): the plateau and final targets, or with weight decay lambda > 0 (one
    member, `structure` = (depth, fusion_layer)) their regularized versions (docs/theory.md §8)."""
    w_uni, w_star = stats.unimodal_weights("A"), stats.optimal_weights()
    if lam is None:
        return w_uni, w_star
    lam = jnp.asarray(lam, stats.sigma_xx.dtype)
    w_uni_lam = regularized_unimodal(stats, lam, structure[0])
    w_lam = regularized_minimum(stats, lam, *structure)[0]
    return jnp.where(lam > 0, w_uni_lam, w_uni), jnp.where(lam > 0, w_lam, w_star)


def _measure_one(
    traj: Trajectory, stats: Statistics, bracket_rtol, learned_fraction
) -> PhaseMeasurements:
    # the statistics in the trajectory's precision (a float32 run measured against float64 stats)
    stats = jax.tree.map(lambda a: jnp.asarray(a, traj.ts.dtype), stats)
    lam = traj.weight_decay  # the run's lambda (its network fixes the regularized targets)
    structure = None if lam is None else (traj.final.depth, traj.final.fusion_layer)
    w_uni, w_star = _targets(stats, lam, structure)
    n_A, dn_A = traj.norms("A")
    n_B, dn_B = traj.norms("B")
    thr_A = 0.5 * jnp.linalg.norm(w_uni)
    thr_B = 0.5 * n_B[-1]
    c_A = _crossing(traj.ts, n_A, dn_A, thr_A)
    c_B = _crossing(traj.ts, n_B, dn_B, thr_B)
    t_A, t_B = c_A.t, c_B.t
    # Is B (the weaker modality) learned? Its final weight must reach a stated fraction of its
    # target ||W*_B|| (zero target: nothing to learn, so no phase time exists).
    target_B = jnp.linalg.norm(w_star[..., traj.d_A :])
    scale = jnp.linalg.norm(w_star) + jnp.finfo(target_B.dtype).tiny
    not_learned = (
        (thr_A <= 0) | (target_B <= 1e-8 * scale) | (n_B[-1] < learned_fraction * target_B)
    )

    def outside(t):
        return ~jnp.isfinite(t) | (t <= 0) | (t > traj.t_end)

    def unresolved(c):
        return c.bracket > bracket_rtol * c.t

    drive_A = jnp.linalg.norm(stats.sigma_yxA)
    drive_B = jnp.linalg.norm(stats.sigma_yxB)
    unimodal = traj.fusion_layer is not None and traj.fusion_layer >= 2
    a_first = drive_A >= _ORDER_MARGIN * drive_B  # the theory fixes the order only with a margin
    reversed_ = (drive_B > drive_A * (1 + 1e-9)) | (unimodal & a_first & (t_B < t_A))
    status = _first_failure(
        [
            (traj.status != Status.OK, traj.status),
            (not_learned, Status.MODALITY_NOT_LEARNED),
            (outside(t_A) | outside(t_B), Status.NO_CROSSING),
            (unresolved(c_A) | unresolved(c_B), Status.CROSSING_UNRESOLVED),
            (reversed_, Status.ORDER_REVERSED),
        ]
    )
    ok = status == Status.OK
    t_A, t_B = jnp.where(ok, t_A, jnp.nan), jnp.where(ok, t_B, jnp.nan)
    t_uni = 0.5 * (t_A + t_B)
    w_uni = hermite_interpolate(traj.ts, traj.W_A, traj.weights_dot[..., : traj.d_A], t_uni)
    misattribution = jnp.where(ok, w_uni - traj.W_A[-1], jnp.nan)
    plateau = jnp.where(ok, jnp.interp(t_uni, traj.ts, traj.loss), jnp.nan)
    return PhaseMeasurements(
        t_A=t_A,
        t_B=t_B,
        time_ratio=t_B / t_A,
        t_uni=t_uni,
        misattribution=misattribution,
        plateau_loss=plateau,
        initial_loss=traj.loss[0],
        final_loss=traj.loss[-1],
        status=status,
        method=traj.method,
    )


def _check_dims(traj: Trajectory, stats: Statistics) -> None:
    o, d = traj.weights.shape[-2:]
    if (stats.d_A, stats.d, stats.d_out) != (traj.d_A, d, o):
        raise ValueError(
            f"stats (d_A, d, d_out) = {(stats.d_A, stats.d, stats.d_out)} do not match the "
            f"trajectory's {(traj.d_A, d, o)}; pass the statistics the run trained on."
        )
    if (
        traj.ts.ndim == 2
        and stats.sigma_xx.ndim == 3
        and stats.sigma_xx.shape[0] != traj.ts.shape[0]
    ):
        raise ValueError(
            f"stats has {stats.sigma_xx.shape[0]} members but the trajectory {traj.ts.shape[0]}."
        )
    if stats.sigma_xx.ndim > traj.ts.ndim + 1:
        raise ValueError("stats are batched but the trajectory is a single run.")


def measure(
    traj: Trajectory,
    stats: Statistics,
    *,
    bracket_rtol: float = 0.05,
    learned_fraction: float = 0.5,
) -> PhaseMeasurements:
    """Phase times, time ratio, misattribution and plateau loss for each member.

    `stats` are the statistics the run trained on (for a `Dataset`, pass `data.statistics()`);
    shared or batched like `traj`. Concrete statistics are validated (`validate_statistics`).

    A member succeeds (`status == Status.OK`) only when all of these hold, checked in order:

    1. the run itself succeeded (`traj.status`: converged, finite, within its budgets);
    2. modality B is learned: ||W_B^tot(t_end)|| >= `learned_fraction` x ||W*_B|| > 0, and
       the unimodal target W_A^uni is nonzero (`MODALITY_NOT_LEARNED`);
    3. both crossings lie inside (0, t_end] (`NO_CROSSING`);
    4. each crossing is resolved by the save grid: the save interval holding it is at most
       `bracket_rtol` x the crossing time (`CROSSING_UNRESOLVED`). With the default log grid
       (512 saves from 1e-5 t_max) intervals are 2.3 % of t, and phase times agree with a
       16x finer grid to ~2e-5 (L = 2) and ~3e-3 (L = 4, u0 = 0.05-0.1: the escape is sharp
       on that scale); at the 5 % limit the measured error reaches ~1e-2 for L = 4
       (docs/reproduction.md, "Measurement accuracy");
    5. the order matches the drives: the definitions assume A is learned first, so
       ||Sigma_yxB|| > ||Sigma_yxA|| is refused (relabel the modalities), and where a
       unimodal phase is predicted (L_f >= 2, known from the trajectory) and the drives fix
       the order (||Sigma_yxA|| >= 1.5 ||Sigma_yxB||) t_B < t_A is refused
       (`ORDER_REVERSED`). With closer drives B may legitimately cross first (found for
       vector modalities at L = 3, L_f = 2 with drive ratios 1.04 and 1.19, where the full
       network and the exact reduced dynamics agree on t_B < t_A).

    Phase quantities of every other member are NaN.

    A run trained with weight decay (`traj.weight_decay`, module docstring) is measured against
    the regularized plateau and final targets (docs/theory.md §8).
    """
    options = check_measure_options(bracket_rtol, learned_fraction)
    require_two_modalities(stats, "measure (t_A, t_B)")
    _check_dims(traj, stats)
    stats = validate_statistics(stats)
    return map_members(_measure_one, traj, stats, *options)


def check_measure_options(bracket_rtol, learned_fraction) -> tuple[float, float]:
    """`bracket_rtol` and `learned_fraction` in (0, 1], as floats (static in the compiled
    measurement)."""
    if not 0 < bracket_rtol <= 1:
        raise ValueError(f"bracket_rtol must be in (0, 1]; got {bracket_rtol!r}.")
    if not 0 < learned_fraction <= 1:
        raise ValueError(f"learned_fraction must be in (0, 1]; got {learned_fraction!r}.")
    return float(bracket_rtol), float(learned_fraction)


@eqx.filter_jit
def map_members(one, traj, stats, bracket_rtol, learned_fraction):
    """`one(traj, stats, bracket_rtol=..., learned_fraction=...)` for a single run, or vmapped
    over a batched trajectory (statistics shared or batched alike); one compiled program per
    measurement and structure."""
    one = functools.partial(one, bracket_rtol=bracket_rtol, learned_fraction=learned_fraction)
    if traj.ts.ndim == 1:
        return one(traj, stats)
    s_axis = 0 if stats.sigma_xx.ndim == 3 else None
    return eqx.filter_vmap(one, in_axes=(eqx.if_array(0), s_axis))(traj, stats)


def generalization_error_curve(
    traj: Trajectory, population: Statistics
) -> Float[Array, "*batch n"]:
    """E_g(t) = 1/2 (W(t) - W*) Sigma (W(t) - W*)^T on the save grid, for population statistics
    (docs/theory.md §5; label noise excluded). `population` may be shared or batched like `traj`."""
    if traj.ts.ndim == 2 and population.sigma_xx.ndim == 3:
        population = jax.tree.map(lambda a: a[:, None], population)
    return population.generalization_error(traj.weights)
