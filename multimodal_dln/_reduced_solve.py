"""One member's solve of the reduced dynamics (`multimodal_dln.reduced_flow`) in one of two
internal representations (private; split from `_reduced_dynamics`, whose docstring derives the
reduction; docs/theory.md §3, §9).

**Balanced** (a `ReducedState` without per-layer offsets): (ln u_m, r_m) per modality for
L_f >= 2, rho_m itself for early fusion; L and L_f enter only as exponents, traced, so one
compiled solver serves every structure.

**Per layer** (a state with per-layer offsets, normalized so that |rho_m| = sigma_m is the
scale of the smallest layer l* of m's chain, layers 1..L_f; `_layers`; per-layer learning rates
enter through `_layers.rescale` and a gain C). That layer is the only one of the chain that
can pass through zero, so its signed scale sigma_m is the free coordinate; every other layer of
the chain has scale sqrt(sigma_m^2 + c_l) (c_l its offset, > 0 unless tied with l*), the shared
layers v_l = sqrt(sigma_A^2 + sigma_B^2 + K_l), and with r_m the first layer's unit row (every
layer but l* positive, so W_m^tot points along sigma_m r_m)

    W_m^tot = C sigma_m Q_m V r_m,  Q_m = prod_{l != l*} sqrt(sigma_m^2 + c_{m,l}),  V = prod v_l,
    tau d sigma_m / dt = C Q_m V (e_m . r_m),
    tau d r_m / dt = C sigma_m Q_m V / (sigma_m^2 + c_{m,1}) (e_m - (e_m . r_m) r_m),

with e_m the m-block of e = Sigma_yx - W Sigma_xx: the chain rule through the product, as in the
balanced reduction (c = 0, C = 1). sigma_m is integrated as xi_m = asinh(sigma_m / eps_m) with
eps_m the square root of the chain's smallest positive offset (for L = 2 the closed form's
variable: d xi / dt = C (e_m . r_m), docs/theory.md §9), or 1e-30 sigma_m(0) when every other
layer ties with l* (zero is then invariant and xi a log-scale: full relative precision as sigma
shrinks). Early fusion integrates rho_m. Exact for every aligned start whose shared layers stay
non-zero (always when every K_l >= 0); a shared layer passing through zero gives NaN, flagged
`NON_FINITE`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from . import _layers
from ._config import SolverConfig
from ._solve import convergence_event, integrate_with, save_grid, saved_to_end, segment_status
from ._statistics import Statistics
from ._training import horizon_at_scale
from ._trajectory import Trajectory

_LOG_SCALE_MAX = 20.0  # per-layer scales above e^20 are never reached by a converging run
_EPS_TIE = 1e-30  # xi's scale, relative to sigma(0), when two layers tie for the smallest
_EPS_FLOOR = 1e-200  # keeps cosh(xi) finite


class _Rep(NamedTuple):
    """A member's internal representation: initial state, weights(y), the vector field, and
    callables for the default horizon, the default atol and the final `ReducedState`."""

    y0: Any
    weights: Any
    field: Any
    horizon: Any
    atol: Any
    final: Any


# ------------------------------------------------------------------------------------------------
# balanced
# ------------------------------------------------------------------------------------------------
def _to_internal(state, early: bool):
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


def _horizon(stats: Statistics, state, L, Lf):
    """Generous time horizon: `_training.horizon_at_scale` at the typical layer
    norms of the balanced network the state describes (u_m for the L_f branch/fusion layers,
    v for the L - L_f shared layers). `L`, `Lf` may be traced."""
    uA, uB = jnp.linalg.norm(state.rho_A), jnp.linalg.norm(state.rho_B)
    v = jnp.sqrt(uA**2 + uB**2 + state.offset)
    logs = Lf * (jnp.log(uA) + jnp.log(uB)) + (L - Lf) * jnp.log(v)
    u = jnp.clip(jnp.exp(logs / (2 * Lf + (L - Lf))), 1e-300, 0.5)
    return horizon_at_scale(stats, u, L)


def _balanced(stats: Statistics, state, structure, early: bool) -> _Rep:
    L, Lf = structure  # traced floats: one compiled solver serves every (L, L_f >= 2)
    weights, vector_field = _make_vector_field(stats, L, Lf, state.offset, early)
    y0 = _to_internal(state, early)

    def atol():
        if early:
            return 1e-12 * jnp.minimum(jnp.linalg.norm(state.rho_A), jnp.linalg.norm(state.rho_B))
        return 1e-12

    def final(y_end):
        if early:
            rho_A, rho_B = y_end
        else:
            rho_A = jnp.exp(y_end[0]) * y_end[1] / jnp.linalg.norm(y_end[1])
            rho_B = jnp.exp(y_end[2]) * y_end[3] / jnp.linalg.norm(y_end[3])
        return dataclasses.replace(state, rho_A=rho_A, rho_B=rho_B)

    return _Rep(y0, weights, vector_field, lambda: _horizon(stats, state, L, Lf), atol, final)


# ------------------------------------------------------------------------------------------------
# per layer (docs/theory.md §9)
# ------------------------------------------------------------------------------------------------
def _chain_constants(rho, offsets):
    """(xi0, r0) and the constants (c', others, eps, xi bound) of one modality's chain (module
    docstring)."""
    u = jnp.linalg.norm(rho)
    c_min = jnp.min(offsets)  # 0 for a normalized state (`_layers.normalized`)
    cp = offsets - c_min
    others = jnp.arange(offsets.shape[0]) != jnp.argmin(offsets)
    sigma0 = jnp.sqrt(u**2 + c_min)
    gap = jnp.min(jnp.where(others, cp, jnp.inf))
    eps = jnp.maximum(jnp.where(gap > 0, jnp.sqrt(gap), _EPS_TIE * sigma0), _EPS_FLOOR)
    bound = jnp.arcsinh(jnp.exp(_LOG_SCALE_MAX) / eps)  # |sigma| <= e^20
    return (jnp.arcsinh(sigma0 / eps), rho / u), (cp, others, eps, bound)


def _initial_internal(rho_A, rho_B, branch, shared, early: bool):
    """(y0, constants) of one member: y = (rho_A, rho_B) for early fusion, else
    (xi_A, r_A, xi_B, r_B)."""
    if early:
        return (rho_A, rho_B), (None, None, shared)
    yA, kA = _chain_constants(rho_A, branch[0])
    yB, kB = _chain_constants(rho_B, branch[1])
    return yA + yB, (kA, kB, shared)


def _chain(xi, consts):
    """sigma, Q, first-layer s^2 and cosh(xi) of one chain at xi."""
    cp, others, eps, bound = consts
    xi = jnp.clip(xi, -bound, bound)  # a rejected trial step must not overflow
    sigma = eps * jnp.sinh(xi)
    q = jnp.prod(jnp.where(others, jnp.sqrt(sigma**2 + cp), 1.0))
    return sigma, q, sigma**2 + cp[0], eps * jnp.cosh(xi)


def _internal_weights(y, consts, gain, early):
    """(W_A, W_B) as vectors and what the vector field needs."""
    shared = consts[2]
    if early:
        rho_A, rho_B = y
        v2 = jnp.sum(rho_A**2) + jnp.sum(rho_B**2) + shared
        g = gain * jnp.prod(jnp.sqrt(jnp.minimum(v2, jnp.exp(2.0 * _LOG_SCALE_MAX))))
        return g * rho_A, g * rho_B, g
    xi_A, om_A, xi_B, om_B = y
    cA, cB = _chain(xi_A, consts[0]), _chain(xi_B, consts[1])
    v = jnp.prod(jnp.sqrt(cA[0] ** 2 + cB[0] ** 2 + shared))
    r_A, r_B = om_A / jnp.linalg.norm(om_A), om_B / jnp.linalg.norm(om_B)
    w_A = gain * cA[0] * cA[1] * v * r_A
    w_B = gain * cB[0] * cB[1] * v * r_B
    return w_A, w_B, (gain * v, cA, cB, r_A, r_B)


def _layered_field(stats: Statistics, consts, gain, early: bool):
    """(weights(y) -> (1, d), vector_field(t, y, args)) of one member (module docstring)."""
    dA = stats.d_A
    syx, sxx = stats.sigma_yx[0], stats.sigma_xx

    def weights(y):
        w_A, w_B, _ = _internal_weights(y, consts, gain, early)
        return jnp.concatenate([w_A, w_B])[None, :]

    def vector_field(t, y, args):
        w_A, w_B, aux = _internal_weights(y, consts, gain, early)
        e = syx - jnp.concatenate([w_A, w_B]) @ sxx
        e_A, e_B = e[:dA], e[dA:]
        if early:
            return (aux * e_A, aux * e_B)
        gv, cA, cB, r_A, r_B = aux
        out = []
        for e_m, (sigma, q, first2, cosh), r_m, om in (
            (e_A, cA, r_A, y[1]),
            (e_B, cB, r_B, y[3]),
        ):
            proj = jnp.dot(e_m, r_m)
            turn = gv * sigma * q / first2 * jnp.linalg.norm(om) * (e_m - proj * r_m)
            out += [gv * q * proj / cosh, turn if e_m.shape[0] > 1 else jnp.zeros_like(om)]
        return tuple(out)

    return weights, vector_field


def _final_rows(y_end, consts, early: bool):
    """(rho_A, rho_B) = sigma_m r_m of the final internal state (the offsets are conserved)."""
    if early:
        return y_end
    out = []
    for xi, om, c in ((y_end[0], y_end[1], consts[0]), (y_end[2], y_end[3], consts[1])):
        out.append(_chain(xi, c)[0] * om / jnp.linalg.norm(om))
    return tuple(out)


def _layered(stats: Statistics, state, lrs, early: bool) -> _Rep:
    arrays = (state.rho_A, state.rho_B, state.branch_offsets, state.shared_offsets)
    gain, scaled = 1.0, stats
    if lrs is not None:  # W~_l = W_l / sqrt(eta_l): plain flow with gain C (`_layers`)
        arrays = _layers.rescale(*arrays, lrs)
        gain = jnp.prod(jnp.sqrt(lrs))
        scaled = Statistics(gain**2 * stats.sigma_xx, gain * stats.sigma_yx, stats.sigma_yy,
                            stats.d_A)  # fmt: skip
    y0, consts = _initial_internal(*arrays, early)
    weights, vector_field = _layered_field(stats, consts, gain, early)
    depth = arrays[2].shape[-1] + arrays[3].shape[-1]  # L_f chain layers, L - L_f shared

    def horizon():
        u = jnp.clip(jnp.exp(_layers.mean_log_scale(*arrays)), 1e-300, 0.5)
        return horizon_at_scale(scaled, u, depth)

    def atol():
        return (
            1e-12 * jnp.minimum(jnp.linalg.norm(y0[0]), jnp.linalg.norm(y0[1])) if early else 1e-12
        )

    def final(y_end):
        out = _final_rows(y_end, consts, early) + arrays[2:]
        if lrs is not None:
            out = _layers.rescale(*out, 1.0 / lrs)
        rho_A, rho_B, branch, shared = out
        return dataclasses.replace(state, rho_A=rho_A, rho_B=rho_B, branch_offsets=branch,
                                   shared_offsets=shared,
                                   offset=_layers.derived_offset(shared))  # fmt: skip

    return _Rep(y0, weights, vector_field, horizon, atol, final)


# ------------------------------------------------------------------------------------------------
# the solve
# ------------------------------------------------------------------------------------------------
class Solve(eqx.Module):
    """One member's reduced solve as a hashable callable (static configuration) for
    `_solve.call`: `early` (L_f = 1) selects the linear representation of the state, `layered`
    the per-layer one."""

    cfg: SolverConfig = eqx.field(static=True)
    early: bool = eqx.field(static=True)
    t_min_fraction: float = eqx.field(static=True)
    layered: bool = eqx.field(static=True, default=False)

    def __call__(self, stats, state, t_max, structure, lrs):
        if self.layered:
            rep = _layered(stats, state, lrs, self.early)
        else:
            rep = _balanced(stats, state, structure, self.early)
        return _solve_one(stats, t_max, rep, self)


def _solve_one(stats: Statistics, t_max, rep: _Rep, opts: Solve) -> Trajectory:
    cfg = opts.cfg
    weights, vector_field, y0 = rep.weights, rep.field, rep.y0

    def loss_fn(y):
        return stats.loss(weights(y))

    def summary(t, y, args):
        w, w_dot = jax.jvp(weights, (y,), (vector_field(t, y, args),))
        return w, w_dot, loss_fn(y)

    l_star = stats.min_loss()
    event = convergence_event(loss_fn, l_star, loss_fn(y0) - l_star, cfg.converge_rtol)
    if t_max is None:
        t_max = rep.horizon()
    t_max = jnp.asarray(t_max, dtype=float)
    ts = save_grid(t_max, cfg.n_save, opts.t_min_fraction)
    atol = cfg.atol if cfg.atol is not None else rep.atol()
    seg = integrate_with(cfg, vector_field, y0, 0.0, t_max, ts, summary, atol=atol, event=event)
    w, w_dot, lss = saved_to_end(seg, summary)
    final = rep.final(seg.y_end)
    finite = jnp.all(jnp.isfinite(w)) & jnp.all(jnp.isfinite(lss))
    return Trajectory(
        ts=ts,
        weights=w,
        weights_dot=w_dot,
        loss=lss,
        t_end=seg.t_end,
        status=segment_status(seg, valid=jnp.asarray(True), finite=finite),
        num_steps=seg.num_steps,
        final=final,
        d_A=stats.d_A,
        method="reduced",
    )
