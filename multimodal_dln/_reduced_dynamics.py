"""Reduced (rank-one) gradient flow of a balanced fusion network with scalar output.

The deep theory (Zhang et al. 2024; docs/theory.md §3) assumes balanced, aligned layers: every
branch layer of modality m and m's block of the fusion layer have scale u_m, the shared layers
scale v,
with v^2 = u_A^2 + u_B^2. This module integrates that reduced system with the **full error
term** e = Sigma_yx - W Sigma_xx (the closed forms keep only its initial value Sigma_yx before
t_A and its plateau value after), so it is valid at any u0, and its u0 -> 0 limit is the
leading-order theory of `multimodal_dln.theory`.

**Derivation.** Gradient flow preserves W_{l+1}^T W_{l+1} - W_l W_l^T. For scalar output and a
balanced start this forces every layer to be rank one, W_l = s_l q_l q_{l-1}^T, with the shared
layers' balance across the fusion layer reading v^2 = u_A^2 + u_B^2 (+ a conserved offset c,
0 when balanced). Only the input directions of the first layers can move. Write
rho_m = u_m r_m (r_m a unit vector in R^{d_m}) for modality m's first-layer row (for L_f = 1:
its block of the fusion layer). Then

    W_m^tot = ||rho_m||^{L_f - 1} v^{L - L_f} rho_m,

and the chain rule through the rank-one product gives, with e_m the m-block of
e = Sigma_yx - W Sigma_xx (= -dL/dW_m^tot),

    tau d rho_m / dt = ||rho_m||^{L_f - 1} v^{L - L_f} e_m^T,           (first layer)
    tau d u_m / dt   = ||rho_m||^{L_f - 1} v^{L - L_f} (e_m . r_m),      (other branch layers)
    tau d v / dt     = v^{L - L_f - 1} sum_m u_m^{L_f} (e_m . r_m),      (shared layers)

consistent with each other (d||rho_m||/dt equals du_m/dt, and d(v^2 - u_A^2 - u_B^2)/dt = 0).
This is an **exact** reduction of the network's gradient flow for any balanced initialization
with scalar output, vector modalities included (the directions r_m rotate); for scalar modalities
the directions are fixed signs. `FusionDLN.init(..., init="aligned", align_to=stats)` is such
an initialization (r_m along W*_m), so the full simulation and `reduced_flow` agree to
integration tolerance (tests/test_reduced_dynamics.py). A random Gaussian initialization is
neither balanced nor rank one: the gap between random-init simulations and the deep formula
(docs/theory.md §3, "Aligned vs random initialization").

**Numerics.** For L_f >= 2 the state is (ln u_m, r_m) per modality: ln u_m keeps full relative
precision while a scale shrinks to 1e-30 and below (B's scale decays during phase 1 when its
drive is negative), and a scale cannot cross zero (it cannot for L_f >= 2: zero is invariant).
For L_f = 1 (early fusion) rho_m is integrated directly (it may change sign). v is eliminated
through the conserved offset. Tsit5 with a PID controller, rtol 1e-10.
"""

from __future__ import annotations

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._config import SolverConfig, check_t_min_fraction, solver_config
from ._network import FusionDLN
from ._solve import (
    call,
    convergence_event,
    integrate_with,
    resolve_batch,
    save_grid,
    saved_to_end,
    segment_status,
)
from ._statistics import Statistics
from ._training import horizon_at_scale
from ._trajectory import Trajectory
from ._validation import check_choice, check_positive, check_structure

__all__ = [
    "ReducedState",
    "reduced_initial_state",
    "reduced_state_from_network",
    "reduced_weights",
    "reduced_flow",
    "DIRECTIONS",
]

DIRECTIONS = ("solution", "drive")
_LOG_SCALE_MAX = 20.0  # per-layer scales above e^20 are never reached by a converging run


class ReducedState(eqx.Module):
    """The reduced state of a balanced scalar-output fusion network (see module docstring).

    - `rho_A` `(d_A,)`, `rho_B` `(d_B,)`: the first-layer rows, ||rho_m|| = u_m.
    - `offset`: the conserved v^2 - u_A^2 - u_B^2 (0 for a balanced initialization).
    """

    rho_A: Float[Array, "*batch dA"]
    rho_B: Float[Array, "*batch dB"]
    offset: Float[Array, "*batch"]


def _unit(v, fallback):
    n = jnp.linalg.norm(v, axis=-1, keepdims=True)
    ok = n > 0
    return jnp.where(ok, v / jnp.where(ok, n, 1.0), fallback)


def _require_scalar_output(d_out):
    if d_out != 1:
        raise ValueError(
            f"the reduced dynamics needs a scalar output (d_out = 1); got d_out = {d_out}."
        )


def reduced_initial_state(
    stats: Statistics, init_scale: ArrayLike, *, direction: str = "solution"
) -> ReducedState:
    """Balanced initial state of per-layer scale u0: rho_m(0) = u0 r_m, offset 0.

    `direction="solution"`: r_m along W*_m (W* = Sigma_yx Sigma^+), exactly the `aligned`
    initialization of `FusionDLN.init(..., init="aligned", align_to=stats)`; a rank-one branch
    cannot change sign, so this is the start from which the reduced path reaches W* for scalar
    modalities. `direction="drive"`: r_m along the initial drive Sigma_yxm, the u0 -> 0 limit of a
    small random start for vector modalities. A zero direction falls back to the other choice,
    then to the first basis vector. Works on batched statistics and u0.
    """
    _require_scalar_output(stats.d_out)
    check_choice("direction", direction, DIRECTIONS)
    u0 = jnp.asarray(check_positive("init_scale (u0)", init_scale), dtype=float)
    w_star = stats.optimal_weights()[..., 0, :]
    drive = stats.sigma_yx[..., 0, :]
    first, second = (w_star, drive) if direction == "solution" else (drive, w_star)
    dA = stats.d_A

    def dirs(sl, n):
        e1 = jnp.zeros(first.shape[:-1] + (n,), first.dtype).at[..., 0].set(1.0)
        return _unit(first[..., sl], _unit(second[..., sl], e1))

    r_A, r_B = dirs(slice(None, dA), dA), dirs(slice(dA, None), stats.d_B)
    u = u0[..., None]
    batch = jnp.broadcast_shapes(r_A.shape[:-1], jnp.shape(u0))
    return ReducedState(
        jnp.broadcast_to(u * r_A, batch + (dA,)),
        jnp.broadcast_to(u * r_B, batch + (stats.d_B,)),
        jnp.zeros(batch),
    )


def reduced_state_from_network(net: FusionDLN) -> ReducedState:
    """The reduced state of a (balanced, rank-one, scalar-output) linear `FusionDLN`.

    u_m is the Frobenius norm of m's first layer, v that of the first shared layer, and rho_m
    points along W_m^tot. For a network that is not balanced and rank one the result is only
    the closest reduced description (the reduced flow from it is then an approximation).
    """
    _require_scalar_output(net.d_out)
    L, Lf = net.depth, net.fusion_layer
    w_A, w_B = net.effective_weights()
    w_A, w_B = w_A[..., 0, :], w_B[..., 0, :]
    fro = lambda a: jnp.sqrt(jnp.sum(a**2, axis=(-2, -1)))  # noqa: E731
    v = fro(net.shared[0]) if L > Lf else None
    if Lf >= 2:
        u_A, u_B = fro(net.branch_A[0]), fro(net.branch_B[0])
        rho_A = u_A[..., None] * _unit(w_A, jnp.zeros_like(w_A))
        rho_B = u_B[..., None] * _unit(w_B, jnp.zeros_like(w_B))
    elif v is not None:
        rho_A, rho_B = w_A / (v ** (L - 1))[..., None], w_B / (v ** (L - 1))[..., None]
    else:
        rho_A, rho_B = w_A, w_B
    off = (v**2 if v is not None else 0.0) - jnp.sum(rho_A**2, -1) - jnp.sum(rho_B**2, -1)
    if v is None:
        off = jnp.zeros_like(off)
    return ReducedState(rho_A, rho_B, off)


def reduced_weights(
    state: ReducedState, depth: int, fusion_layer: int
) -> tuple[Float[Array, "*batch 1 dA"], Float[Array, "*batch 1 dB"]]:
    """(W_A^tot, W_B^tot) of a reduced state: W_m = ||rho_m||^{L_f-1} v^{L-L_f} rho_m."""
    L, Lf = depth, fusion_layer
    uA2, uB2 = jnp.sum(state.rho_A**2, -1), jnp.sum(state.rho_B**2, -1)
    v = jnp.sqrt(uA2 + uB2 + state.offset) if L > Lf else 1.0
    fA = uA2 ** (0.5 * (Lf - 1)) * v ** (L - Lf)
    fB = uB2 ** (0.5 * (Lf - 1)) * v ** (L - Lf)
    return (fA[..., None] * state.rho_A)[..., None, :], (fB[..., None] * state.rho_B)[..., None, :]


# ------------------------------------------------------------------------------------------------
# internal representation
# ------------------------------------------------------------------------------------------------
def _to_internal(state: ReducedState, early: bool):
    if early:
        return (state.rho_A, state.rho_B)
    out = []
    for rho in (state.rho_A, state.rho_B):
        u = jnp.linalg.norm(rho)
        out += [jnp.log(u), rho / u]
    return tuple(out)


def _weights_internal(y, L, Lf, offset, early: bool):
    """(W_A, W_B) as vectors, plus what the vector field needs. `L`, `Lf` may be traced; only
    `early` (L_f = 1, linear representation) is static."""
    if early:
        rho_A, rho_B = y
        v2 = jnp.sum(rho_A**2) + jnp.sum(rho_B**2) + offset
        g = jnp.minimum(v2, jnp.exp(2.0 * _LOG_SCALE_MAX)) ** (0.5 * (L - 1))
        return g * rho_A, g * rho_B, g
    lam_A, om_A, lam_B, om_B = y
    # A rejected trial step can propose an absurd log-scale; clipping keeps its weights finite
    # (exp overflow would give NaN error estimates, on which the step controller stalls).
    lam_A, lam_B = jnp.minimum(lam_A, _LOG_SCALE_MAX), jnp.minimum(lam_B, _LOG_SCALE_MAX)
    r_A, r_B = om_A / jnp.linalg.norm(om_A), om_B / jnp.linalg.norm(om_B)
    # shared layers (absent when L = L_f: the factor L - L_f is then 0)
    v2 = jnp.exp(2.0 * lam_A) + jnp.exp(2.0 * lam_B) + offset
    post = (L - Lf) * 0.5 * jnp.log(v2)
    w_A = jnp.exp(Lf * lam_A + post) * r_A
    w_B = jnp.exp(Lf * lam_B + post) * r_B
    kappa = (jnp.exp((Lf - 2) * lam_A + post), jnp.exp((Lf - 2) * lam_B + post))
    return w_A, w_B, (r_A, r_B, kappa)


def _make_vector_field(stats: Statistics, L, Lf, offset, early: bool):
    dA = stats.d_A
    syx, sxx = stats.sigma_yx[0], stats.sigma_xx

    def weights(y):
        w_A, w_B, _ = _weights_internal(y, L, Lf, offset, early)
        return jnp.concatenate([w_A, w_B])[None, :]

    def vector_field(t, y, args):
        w_A, w_B, aux = _weights_internal(y, L, Lf, offset, early)
        e = syx - jnp.concatenate([w_A, w_B]) @ sxx
        e_A, e_B = e[:dA], e[dA:]
        if early:
            g = aux
            return (g * e_A, g * e_B)
        (r_A, r_B), (k_A, k_B) = aux[:2], aux[2]
        _, om_A, _, om_B = y
        out = []
        for e_m, r_m, k_m, om in ((e_A, r_A, k_A, om_A), (e_B, r_B, k_B, om_B)):
            proj = jnp.dot(e_m, r_m)
            out += [k_m * proj, k_m * jnp.linalg.norm(om) * (e_m - proj * r_m)]
        return tuple(out)

    return weights, vector_field


def _horizon(stats: Statistics, state: ReducedState, L, Lf):
    """Generous time horizon: `_training.horizon_at_scale` at the typical layer
    norms of the balanced network the state describes (u_m for the L_f branch/fusion layers,
    v for the L - L_f shared layers). `L`, `Lf` may be traced."""
    uA, uB = jnp.linalg.norm(state.rho_A), jnp.linalg.norm(state.rho_B)
    v = jnp.sqrt(uA**2 + uB**2 + state.offset)
    logs = Lf * (jnp.log(uA) + jnp.log(uB)) + (L - Lf) * jnp.log(v)
    u = jnp.clip(jnp.exp(logs / (2 * Lf + (L - Lf))), 1e-300, 0.5)
    return horizon_at_scale(stats, u, L)


class _Solve(eqx.Module):
    """One member's reduced solve as a hashable callable (static configuration) for
    `_solve.call`; `early` (L_f = 1) selects the linear representation of the state."""

    cfg: SolverConfig = eqx.field(static=True)
    early: bool = eqx.field(static=True)
    t_min_fraction: float = eqx.field(static=True)

    def __call__(self, stats, state, t_max, structure):
        return _solve_one(stats, state, t_max, structure, self)


def _solve_one(
    stats: Statistics, state: ReducedState, t_max, structure, opts: _Solve
) -> Trajectory:
    cfg, early = opts.cfg, opts.early
    L, Lf = structure  # traced floats: one compiled solver serves every (L, L_f >= 2)
    weights, vector_field = _make_vector_field(stats, L, Lf, state.offset, early)
    y0 = _to_internal(state, early)

    def loss_fn(y):
        return stats.loss(weights(y))

    def summary(t, y, args):
        w, w_dot = jax.jvp(weights, (y,), (vector_field(t, y, args),))
        return w, w_dot, loss_fn(y)

    l_star = stats.min_loss()
    event = convergence_event(loss_fn, l_star, loss_fn(y0) - l_star, cfg.converge_rtol)
    if t_max is None:
        t_max = _horizon(stats, state, L, Lf)
    t_max = jnp.asarray(t_max, dtype=float)
    ts = save_grid(t_max, cfg.n_save, opts.t_min_fraction)
    if cfg.atol is not None:
        atol = cfg.atol
    elif early:
        atol = 1e-12 * jnp.minimum(jnp.linalg.norm(state.rho_A), jnp.linalg.norm(state.rho_B))
    else:
        atol = 1e-12
    seg = integrate_with(cfg, vector_field, y0, 0.0, t_max, ts, summary, atol=atol, event=event)
    w, w_dot, lss = saved_to_end(seg, summary)
    y_end = seg.y_end
    if early:
        rho_A, rho_B = y_end
    else:
        rho_A = jnp.exp(y_end[0]) * y_end[1] / jnp.linalg.norm(y_end[1])
        rho_B = jnp.exp(y_end[2]) * y_end[3] / jnp.linalg.norm(y_end[3])
    finite = jnp.all(jnp.isfinite(w)) & jnp.all(jnp.isfinite(lss))
    return Trajectory(
        ts=ts,
        weights=w,
        weights_dot=w_dot,
        loss=lss,
        t_end=seg.t_end,
        status=segment_status(seg, valid=jnp.asarray(True), finite=finite),
        num_steps=seg.num_steps,
        final=ReducedState(rho_A, rho_B, state.offset),
        d_A=stats.d_A,
        method="reduced",
    )


def reduced_flow(
    stats: Statistics,
    *,
    depth: int,
    fusion_layer: int,
    init_scale: ArrayLike | None = None,
    state: ReducedState | None = None,
    direction: str = "solution",
    t_max: ArrayLike | None = None,
    n_save: int = 512,
    t_min_fraction: float = 1e-5,
    rtol: float = 1e-10,
    atol: float | None = None,
    converge_rtol: float = 1e-6,
    max_steps: int = 100_000,
    solver: diffrax.AbstractSolver | None = None,
) -> Trajectory:
    """Integrate the reduced balanced rank-one gradient flow (module docstring), batched.

    **Arguments:**

    - `stats`: `Statistics` with scalar output (d_out = 1), optionally batched (one leading axis).
    - `depth`, `fusion_layer`: L and L_f.
    - `init_scale` (u0, scalar or one per member) with `direction`, or an explicit `state`
      (e.g. `reduced_state_from_network(net)`); see `reduced_initial_state`.
    - `t_max`, `n_save`, `t_min_fraction`, `converge_rtol`, `max_steps`, `solver`: as in
      `multimodal_dln.gradient_flow` (same log-spaced save grid and convergence event, so
      `multimodal_dln.measure` applies unchanged and a run with the same `t_max` is sampled at
      the same times as the network's).
    - `rtol`, `atol`: controller tolerances (default atol: 1e-12 on the O(1) log-scale and
      direction variables; 1e-12 u0 for early fusion).

    **Returns:** a `Trajectory` of the effective weights, with `final` the final `ReducedState`.
    """
    depth, fusion_layer = check_structure(depth, fusion_layer)
    _require_scalar_output(stats.d_out)
    if (init_scale is None) == (state is None):
        raise ValueError("pass exactly one of init_scale (with direction) and state.")
    cfg = solver_config(n_save, rtol, atol, converge_rtol, max_steps, solver)
    opts = _Solve(cfg, fusion_layer == 1, check_t_min_fraction(t_min_fraction))
    if state is None:
        state = reduced_initial_state(stats, init_scale, direction=direction)
    if t_max is not None:
        t_max = check_positive("t_max", jnp.asarray(t_max, dtype=float))
    # L and L_f enter only as exponents: traced, so one compilation serves all structures.
    structure = (jnp.asarray(depth, dtype=float), jnp.asarray(fusion_layer, dtype=float))
    if stats.sigma_xx.ndim > 3 or state.rho_A.ndim > 2:
        raise ValueError("statistics and states may carry at most one leading batch axis.")
    batch, (s_axis, st_axis) = resolve_batch(
        [
            ("statistics", stats.sigma_xx.shape[0] if stats.sigma_xx.ndim == 3 else None),
            ("states", state.rho_A.shape[0] if state.rho_A.ndim == 2 else None),
        ]
    )
    axes = None
    if batch is not None:
        if st_axis is None:
            state = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch,) + jnp.shape(a)), state)
        axes = (s_axis, 0, None if t_max is None or jnp.ndim(t_max) == 0 else 0, None)
    traj = call(opts, (stats, state, t_max, structure), axes)
    return dataclasses.replace(traj, fusion_layer=fusion_layer)  # static: known here, traced inside
