"""Phase times of M >= 2 modalities and the order in which they are learned (docs/theory.md §11).

With M modalities a late- or intermediate-fusion network learns them one after another: after
k of them (the set S_k) it sits near the restricted optimum W_{S_k} (`_modalities`), and the
next one rises while the others wait. The measurement follows that sequence, without assuming
the order:

- for every modality m not yet learned, its target is the norm of its block of
  W_{S_k + m} (the plateau it rises to if it is the (k+1)-th); its candidate time is the first
  time ||W_m^tot(t)|| reaches half that target (Hermite-interpolated crossing, as `measure`);
- the earliest candidate is the (k+1)-th learned modality; its time is t_(k+1);
- the last modality's target is its own final value (as t_B in `measure`).

For M = 2 this is `measure`'s definition: t_A is the half-rise to ||W_A^uni|| = ||W_{A}||, t_B
to B's final value; here the order is measured rather than assumed (no ORDER_REVERSED).
A member succeeds only if its run did, every modality is learned (final block at least
`learned_fraction` of its block of W*, which is nonzero), every crossing lies in (0, t_end] and
is resolved by the save grid; otherwise its times are NaN and its order -1.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._measurements import _crossing, _first_failure, check_measure_options, map_members
from ._modalities import block_norms, restricted_optimum
from ._statistics import Statistics
from ._statistics_checks import validate_statistics
from ._status import Status, describe
from ._trajectory import Trajectory

__all__ = ["ModalityPhases", "measure_modalities"]


class ModalityPhases(eqx.Module):
    """Per-member results of `measure_modalities` (batched like the trajectory).

    - `times[..., m]`: when modality m is learned (t_m), NaN unless `status` is OK;
    - `order[..., k]`: the index of the (k+1)-th learned modality (-1 unless OK);
    - `targets[..., m]`: the block norm whose half defines t_m (its plateau value);
    - `status`: a `Status` code per member.
    """

    times: Float[Array, "*batch M"]
    order: Int[Array, "*batch M"]
    targets: Float[Array, "*batch M"]
    status: Int[Array, "*batch"]
    method: str = eqx.field(static=True, default="flow")

    @property
    def success(self) -> Bool[Array, "*batch"]:
        return self.status == Status.OK

    @property
    def sorted_times(self) -> Float[Array, "*batch M"]:
        """t_(1) <= ... <= t_(M): the phase times in the order the modalities are learned."""
        return jnp.sort(self.times, axis=-1)

    def failure_reasons(self) -> list[str]:
        """One line per member: "ok", or why the measurement failed and what to change."""
        return [describe(c, self.method) for c in np.atleast_1d(np.asarray(self.status)).ravel()]


def _block_curves(traj: Trajectory, stats: Statistics):
    """(||W_m(t)||, d/dt ||W_m(t)||), each (n_save, M) (`Trajectory.norms` per modality)."""
    curves = [traj.norms(s) for s in stats.modality_slices]
    return jnp.stack([c[0] for c in curves], -1), jnp.stack([c[1] for c in curves], -1)


def _measure_one(traj: Trajectory, stats: Statistics, bracket_rtol, learned_fraction):
    stats = jax.tree.map(lambda a: jnp.asarray(a, traj.ts.dtype), stats)
    n_mod = stats.n_modalities
    nrm, dnrm = _block_curves(traj, stats)
    eye = jnp.eye(n_mod, dtype=bool)
    crossing = jax.vmap(_crossing, in_axes=(None, 1, 1, 0))
    learned = jnp.zeros(n_mod, bool)
    times = jnp.full(n_mod, jnp.nan, traj.ts.dtype)
    targets, brackets = jnp.zeros_like(times), jnp.zeros_like(times)
    order = []
    for k in range(n_mod):
        if k < n_mod - 1:  # plateau of m if it is learned next: its block of W_{S + m}
            w_next = jax.vmap(lambda e: restricted_optimum(stats, learned | e))(eye)
            target = jnp.diagonal(block_norms(stats, w_next))
        else:  # the last one rises to its own final value (as t_B in `measure`)
            target = nrm[-1]
        c = crossing(traj.ts, nrm, dnrm, 0.5 * target)
        j = jnp.argmin(jnp.where(learned | ~jnp.isfinite(c.t), jnp.inf, c.t))
        j = jnp.where(jnp.all(learned | ~jnp.isfinite(c.t)), jnp.argmin(learned), j)
        times, targets = times.at[j].set(c.t[j]), targets.at[j].set(target[j])
        brackets = brackets.at[j].set(c.bracket[j])
        learned, order = learned.at[j].set(True), order + [j]
    w_star = block_norms(stats, stats.optimal_weights())
    scale = jnp.linalg.norm(w_star) + jnp.finfo(w_star.dtype).tiny
    not_learned = jnp.any((w_star <= 1e-8 * scale) | (nrm[-1] < learned_fraction * w_star))
    outside = jnp.any(~jnp.isfinite(times) | (times <= 0) | (times > traj.t_end))
    status = _first_failure(
        [
            (traj.status != Status.OK, traj.status),
            (not_learned | jnp.any(targets <= 0), Status.MODALITY_NOT_LEARNED),
            (outside, Status.NO_CROSSING),
            (jnp.any(brackets > bracket_rtol * times), Status.CROSSING_UNRESOLVED),
        ]
    )
    ok = status == Status.OK
    return ModalityPhases(
        times=jnp.where(ok, times, jnp.nan),
        order=jnp.where(ok, jnp.stack(order), -1),
        targets=targets,
        status=status,
        method=traj.method,
    )


def measure_modalities(
    traj: Trajectory,
    stats: Statistics,
    *,
    bracket_rtol: float = 0.05,
    learned_fraction: float = 0.5,
) -> ModalityPhases:
    """Phase times t_1..t_M and the learning order of every member (module docstring), for
    any number of modalities M >= 2 (`stats.modality_dims` splits the weights).

    `stats` are the statistics the run trained on, shared or batched like `traj`; concrete ones
    are validated. `bracket_rtol` and `learned_fraction` are `measure`'s checks.
    """
    options = check_measure_options(bracket_rtol, learned_fraction)
    o, d = traj.weights.shape[-2:]
    if (stats.d, stats.d_out) != (d, o):
        raise ValueError(
            f"stats (d, d_out) = {(stats.d, stats.d_out)} do not match the trajectory's "
            f"{(d, o)}; pass the statistics the run trained on."
        )
    if traj.ts.ndim == 2 and stats.sigma_xx.ndim == 3 and stats.batch_shape[0] != traj.ts.shape[0]:
        raise ValueError(
            f"stats has {stats.batch_shape[0]} members but the trajectory {traj.ts.shape[0]}."
        )
    stats = validate_statistics(stats)
    return map_members(_measure_one, traj, stats, *options)
