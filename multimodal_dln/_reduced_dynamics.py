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

**Unbalanced starts, per-layer learning rates** (docs/theory.md §9): a state with per-layer
offsets (`ReducedState.branch_offsets`, `shared_offsets`: from `reduced_state_from_network`, or
`reduced_initial_state(..., layer_scales=...)`) or a run with `layer_lrs` is integrated in the
per-layer representation of `multimodal_dln._reduced_solve` (one signed free scale per modality, the
other layers from the conserved offsets); a state without them as above, unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _layers
from ._config import check_t_min_fraction, solver_config
from ._layers import check_layer_lrs, check_layer_scales
from ._network import FusionDLN
from ._reduced_solve import Solve
from ._solve import call, resolve_batch
from ._statistics import Statistics, require_two_modalities
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


class ReducedState(eqx.Module):
    """The reduced state of an aligned rank-one scalar-output fusion network (module docstring).

    - `rho_A` `(d_A,)`, `rho_B` `(d_B,)`: the first-layer rows, ||rho_m|| = u_m, along W_m^tot.
    - `offset`: v^2 - u_A^2 - u_B^2, v the first shared layer's scale (0 for a balanced start and
      when there is no shared layer).
    - `branch_offsets` `(2, L_f)`, `shared_offsets` `(L - L_f,)`: None (balanced), or the
      conserved per-layer offsets of an unbalanced start (docs/theory.md §9). Then rho_m points
      along m's first-layer row but its norm u_m is the scale of the smallest layer of m's
      chain (layers 1..L_f), `branch_offsets[m, l - 1]` = s_{m,l}^2 - u_m^2 >= 0 (the fusion
      block last) and `shared_offsets[l - L_f - 1]` = v_l^2 - u_A^2 - u_B^2 (`offset` is its
      first entry); `multimodal_dln._layers` says why.
    """

    rho_A: Float[Array, "*batch dA"]
    rho_B: Float[Array, "*batch dB"]
    offset: Float[Array, "*batch"]
    branch_offsets: Float[Array, "*batch 2 lf"] | None = None
    shared_offsets: Float[Array, "*batch j"] | None = None


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
    stats: Statistics,
    init_scale: ArrayLike,
    *,
    direction: str = "solution",
    layer_scales: ArrayLike | Sequence | None = None,
    fusion_layer: int | None = None,
) -> ReducedState:
    """Balanced initial state of per-layer scale u0: rho_m(0) = u0 r_m, offset 0.

    `direction="solution"`: r_m along W*_m (W* = Sigma_yx Sigma^+), exactly the `aligned`
    initialization of `FusionDLN.init(..., init="aligned", align_to=stats)`; a rank-one branch
    cannot change sign, so this is the start from which the reduced path reaches W* for scalar
    modalities. `direction="drive"`: r_m along the initial drive Sigma_yxm, the u0 -> 0 limit of a
    small random start for vector modalities. A zero direction falls back to the other choice,
    then to the first basis vector. Works on batched statistics and u0.

    `layer_scales` with `fusion_layer`: the unbalanced start of `FusionDLN.init(...,
    init="aligned", layer_scales=...)` (the same (L,) or (2, L) multipliers; docs/theory.md §9):
    rho_m(0) = min_{l <= L_f} m_{m,l} u0 r_m and that layout's per-layer offsets. Not batched
    (vmap over it).
    """
    require_two_modalities(stats, "the reduced dynamics")
    _require_scalar_output(stats.d_out)
    check_choice("direction", direction, DIRECTIONS)
    u0 = jnp.asarray(check_positive("init_scale (u0)", init_scale), dtype=float)
    if (layer_scales is None) != (fusion_layer is None):
        raise ValueError("pass layer_scales and fusion_layer together (or neither).")
    if layer_scales is not None:
        L, Lf = check_structure(np.shape(layer_scales)[-1], fusion_layer)
        rows = jnp.broadcast_to(check_layer_scales(layer_scales, "aligned", L, Lf), (2, L))
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
    if layer_scales is not None:
        first, branch, shared = _layers.scale_offsets(u0, rows, Lf)
        fit = lambda a, n: jnp.broadcast_to(a, batch + a.shape[-n:])  # noqa: E731
        rho_A, rho_B = fit(first[..., :1] * r_A, 1), fit(first[..., 1:] * r_B, 1)
        return _layered_state(rho_A, rho_B, fit(branch, 2), fit(shared, 1))
    return ReducedState(
        jnp.broadcast_to(u * r_A, batch + (dA,)),
        jnp.broadcast_to(u * r_B, batch + (stats.d_B,)),
        jnp.zeros(batch),
    )


def _layered_state(rho_A, rho_B, branch, shared) -> ReducedState:
    """A per-layer state, with `offset` (first shared layer vs free scales) derived."""
    return ReducedState(rho_A, rho_B, _layers.derived_offset(shared), branch, shared)


def _as_layered(state: ReducedState, depth: int, fusion_layer: int) -> ReducedState:
    """`state` with per-layer offsets (balanced: zero branch offsets, every shared offset equal
    to `offset`), checked against the structure and normalized (`_layers.normalized`)."""
    L, Lf = depth, fusion_layer
    batch = state.offset.shape
    if state.branch_offsets is None:
        branch = jnp.zeros(batch + (2, Lf))
        shared = jnp.broadcast_to(state.offset[..., None], batch + (L - Lf,))
        return _layered_state(state.rho_A, state.rho_B, branch, shared)
    want = (batch + (2, Lf), batch + (L - Lf,))
    got = (state.branch_offsets.shape, state.shared_offsets.shape)
    if got != want:
        raise ValueError(
            f"state.branch_offsets and shared_offsets must have shapes {want[0]} and {want[1]} "
            f"for depth L = {L}, fusion_layer L_f = {Lf}; got {got[0]} and {got[1]}."
        )
    arrays = (state.rho_A, state.rho_B, state.branch_offsets, state.shared_offsets)
    return _layered_state(*_layers.normalized(*arrays))


def reduced_state_from_network(net: FusionDLN) -> ReducedState:
    """
    if net.n_modalities != 2:
        raise ValueError(
            f"the reduced dynamics is implemented for two modalities; the network has "
            f"M = {net.n_modalities}."
        )The reduced state of an aligned (rank-one, scalar-output) linear `FusionDLN`, balanced
    or not, with its per-layer offsets (docs/theory.md §9).

    Scales are Frobenius norms: u_m that of m's smallest chain layer, and rho_m points along
    W_m^tot. For a network that is not rank one the result is only the closest reduced
    description (the reduced flow from it is then an approximation).
    """
    _require_scalar_output(net.d_out)
    w_A, w_B = net.effective_weights()
    w_A, w_B = w_A[..., 0, :], w_B[..., 0, :]
    free, branch, shared = _layers.network_layers(net)
    rho_A = free[..., :1] * _unit(w_A, jnp.zeros_like(w_A))
    rho_B = free[..., 1:] * _unit(w_B, jnp.zeros_like(w_B))
    return _layered_state(rho_A, rho_B, branch, shared)


def reduced_weights(
    state: ReducedState, depth: int, fusion_layer: int
) -> tuple[Float[Array, "*batch 1 dA"], Float[Array, "*batch 1 dB"]]:
    """(W_A^tot, W_B^tot) of a reduced state: W_m = ||rho_m||^{L_f-1} v^{L-L_f} rho_m, or with
    per-layer offsets the product of every layer's scale times rho_m (docs/theory.md §9)."""
    L, Lf = depth, fusion_layer
    if state.branch_offsets is not None:
        st = _as_layered(state, L, Lf)
        return _layers.layered_weights(st.rho_A, st.rho_B, st.branch_offsets, st.shared_offsets)
    uA2, uB2 = jnp.sum(state.rho_A**2, -1), jnp.sum(state.rho_B**2, -1)
    v = jnp.sqrt(uA2 + uB2 + state.offset) if L > Lf else 1.0
    fA = uA2 ** (0.5 * (Lf - 1)) * v ** (L - Lf)
    fB = uB2 ** (0.5 * (Lf - 1)) * v ** (L - Lf)
    return (fA[..., None] * state.rho_A)[..., None, :], (fB[..., None] * state.rho_B)[..., None, :]


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
    layer_lrs: ArrayLike | Sequence | None = None,
) -> Trajectory:
    """Integrate the reduced rank-one gradient flow (module docstring), batched.

    **Arguments:**

    - `stats`: `Statistics` with scalar output (d_out = 1), optionally batched (one leading axis).
    - `depth`, `fusion_layer`: L and L_f.
    - `init_scale` (u0, scalar or one per member) with `direction`, or an explicit `state`
      (e.g. `reduced_state_from_network(net)`, or an unbalanced start from
      `reduced_initial_state(..., layer_scales=...)`); see `reduced_initial_state`.
    - `layer_lrs`: per-layer learning rates eta_1..eta_L (tau dW_l/dt = -eta_l dL/dW_l), shape
      (L,) or one row per member; None: all 1. Integrated exactly through their equivalence with
      an imbalance and a gain (docs/theory.md §9).
    - `t_max`, `n_save`, `t_min_fraction`, `converge_rtol`, `max_steps`, `solver`: as in
      `multimodal_dln.gradient_flow` (same log-spaced save grid and convergence event, so
      `multimodal_dln.measure` applies unchanged and a run with the same `t_max` is sampled at
      the same times as the network's).
    - `rtol`, `atol`: controller tolerances (default atol: 1e-12 on the O(1) log-scale (per
      layer: asinh-scale) and direction variables; 1e-12 u0 for early fusion).

    **Returns:** a `Trajectory` of the effective weights, with `final` the final `ReducedState`.
    """
    depth, fusion_layer = check_structure(depth, fusion_layer)
    _require_scalar_output(stats.d_out)
    if (init_scale is None) == (state is None):
        raise ValueError("pass exactly one of init_scale (with direction) and state.")
    cfg = solver_config(n_save, rtol, atol, converge_rtol, max_steps, solver)
    if state is None:
        state = reduced_initial_state(stats, init_scale, direction=direction)
    lrs = None if layer_lrs is None else check_layer_lrs(layer_lrs, depth)
    layered = state.branch_offsets is not None or lrs is not None
    if layered:
        state = _as_layered(state, depth, fusion_layer)
    opts = Solve(cfg, fusion_layer == 1, check_t_min_fraction(t_min_fraction), layered)
    if t_max is not None:
        t_max = check_positive("t_max", jnp.asarray(t_max, dtype=float))
    # L and L_f enter only as exponents: traced, so one compilation serves all structures.
    structure = (jnp.asarray(depth, dtype=float), jnp.asarray(fusion_layer, dtype=float))
    if stats.sigma_xx.ndim > 3 or state.rho_A.ndim > 2:
        raise ValueError("statistics and states may carry at most one leading batch axis.")
    batch, (s_axis, st_axis, lr_axis) = resolve_batch(
        [
            ("statistics", stats.sigma_xx.shape[0] if stats.sigma_xx.ndim == 3 else None),
            ("states", state.rho_A.shape[0] if state.rho_A.ndim == 2 else None),
            ("layer_lrs rows", lrs.shape[0] if lrs is not None and lrs.ndim == 2 else None),
        ]
    )
    axes = None
    if batch is not None:
        if st_axis is None:
            state = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch,) + jnp.shape(a)), state)
        axes = (s_axis, 0, None if t_max is None or jnp.ndim(t_max) == 0 else 0, None, lr_axis)
    traj = call(opts, (stats, state, t_max, structure, lrs), axes)
    return dataclasses.replace(traj, fusion_layer=fusion_layer)  # static: known here, traced inside
