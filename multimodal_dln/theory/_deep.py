"""Deep and intermediate fusion: the integral formula for t_A and the time ratio t_B / t_A.

Zhang et al. 2024, time ratio as a function of L, L_f, rho, r and u0 (authors' code
`sweep.lag_depth`, `sweep.integrand`); docs/theory.md §3.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._statistics import Statistics
from .._validation import check_positive, check_structure
from ._fixed_points import Drives, drives, drives_toy
from ._util import _check_u0, _f

_GL_PANELS = 48
_GL_NODES = 24
_gl_x, _gl_w = np.polynomial.legendre.leggauss(_GL_NODES)


def partner_scale(
    u: ArrayLike, init_scale: ArrayLike, k_s: ArrayLike, fusion_layer: int
) -> Float[Array, ...]:
    """u_B as a function of u_A = u before A is learned (the invariant of the early-time reduced
    dynamics, docs/theory.md §3), k_s = s_B / s_A:

    - L_f != 2: u_B^{2-L_f} = k_s u^{2-L_f} + (1 - k_s) u0^{2-L_f};
    - L_f = 2:  u_B = u^{k_s} u0^{1-k_s}.

    Written as u0 x (function of u / u0), which cannot overflow for tiny u0.
    (For L_f = 1, u_B = k_s u + (1 - k_s) u0 is a signed first-layer component.)
    """
    u, u0, k = _f(u), _f(init_scale), _f(k_s)
    z = u / u0
    if fusion_layer == 2:
        return u0 * jnp.exp(k * jnp.log(z))
    p = 2.0 - fusion_layer
    return u0 * (k * z**p + (1.0 - k)) ** (1.0 / p)


def _log_integrand(x, x0, depth, fusion_layer, s_A, k_s):
    """log of u^{2-L_f} / (s_A (u^2 + u_B^2)^{(L-L_f)/2}) at u = exp(x) (du-integrand x u)."""
    L, Lf = depth, fusion_layer
    z = x - x0  # ln(u / u0) >= 0
    if Lf == 2:
        rB = jnp.exp(k_s * z)
    else:
        p = 2.0 - Lf
        rB = (k_s * jnp.exp(p * z) + (1.0 - k_s)) ** (1.0 / p)
    # u^2 + u_B^2 = u0^2 (e^{2z} + rB^2); evaluate the log without overflow.
    log_sq = 2.0 * x0 + jnp.logaddexp(2.0 * z, 2.0 * jnp.log(jnp.abs(rB)))
    return (2.0 - Lf) * x - jnp.log(s_A) - 0.5 * (L - Lf) * log_sq


def unimodal_integral(
    depth: int,
    fusion_layer: int,
    s_A: ArrayLike,
    s_B: ArrayLike,
    init_scale: ArrayLike,
) -> Float[Array, ...]:
    """t_A / tau: the time for A's per-layer scale to grow from u0 to 1 (Zhang et al. 2024,
    deep-network integral; authors' `sweep.integrand`; docs/theory.md §3),

        I = int_{u0}^{1} du / [ s_A u^{L_f-1} (u^2 + u_B(u)^2)^{(L-L_f)/2} ],

    with u_B(u) from `partner_scale` (k_s = s_B / s_A; s_B signed for scalar modalities). It is
    the solution of the early-time reduced dynamics tau du_A/dt = s_A u_A^{L_f-1} v^{L-L_f},
    v^2 = u_A^2 + u_B^2 (B's drive likewise), i.e. the error term is replaced by its initial
    value Sigma_yx. Special cases: L_f = L gives (u0^{2-L} - 1) / ((L - 2) s_A) (L >= 3) and
    ln(1/u0) / s_A (L = 2).

    Quadrature (docs/theory.md §3): substitute u = e^x (the integrand is sharply peaked at u0
    on the u axis and smooth, at most exponential, on the x axis) and apply composite
    Gauss-Legendre with 48 panels x 24 nodes on [ln u0, 0], integrand in log space (no
    overflow down to u0 = 1e-30). Fixed shapes, so it jits and vmaps; agrees with
    `scipy.integrate.quad` to < 1e-10 relative (tests/test_theory.py). Valid while B does not
    overtake A (k_s < 1).
    """
    L, Lf = check_structure(depth, fusion_layer)
    u0 = _check_u0(init_scale)
    s_A = check_positive("s_A", s_A)
    return _integral(L, Lf, _f(s_A), _f(s_B), _f(u0))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _integral(L, Lf, s_A, s_B, u0):
    k_s = s_B / s_A
    x0 = jnp.log(u0)
    edges = jnp.linspace(0.0, 1.0, _GL_PANELS + 1)  # fractions of [x0, 0]
    left, right = edges[:-1], edges[1:]
    mid, half = 0.5 * (left + right), 0.5 * (right - left)
    frac = mid[:, None] + half[:, None] * jnp.asarray(_gl_x)[None, :]  # (panels, nodes)
    w = half[:, None] * jnp.asarray(_gl_w)[None, :]
    # x = x0 (1 - frac); dx = -x0 dfrac; broadcast over batch dims of the parameters.
    x = x0[..., None, None] * (1.0 - frac)
    f = jnp.exp(
        _log_integrand(x, x0[..., None, None], L, Lf, s_A[..., None, None], k_s[..., None, None])
    )
    return -x0 * jnp.sum(w * f, axis=(-2, -1))


def _deep_lag(depth, fusion_layer, d: Drives, u0):
    """(t_B - t_A) / tau after A is learned (docs/theory.md §3), for 2 <= L_f < L."""
    L, Lf = depth, fusion_layer
    k_s = d.s_B / d.s_A
    post = d.w_uni ** (Lf / L - 1.0)
    if Lf == 2:
        return (1.0 - k_s) * jnp.log(1.0 / u0) * post / d.g_B
    return (1.0 - k_s) * u0 ** (2.0 - Lf) * post / ((Lf - 2.0) * d.g_B)


def time_ratio_deep_from_drives(
    depth: int, fusion_layer: int, d: Drives, init_scale: ArrayLike
) -> Float[Array, ...]:
    """Deep / intermediate-fusion t_B / t_A from the drives (Zhang et al. 2024, authors'
    `sweep.lag_depth`; docs/theory.md §3):

        t_B / t_A = 1 + (t_B - t_A) / (tau I),     I = `unimodal_integral`,

    with B's remaining time once A sits at M_A (shared layers at scale ||W_A^uni||^{1/L}, so B's
    drive is g_B ||W_A^uni||^{1 - L_f/L} u_B^{L_f-1}):

    - L_f = 2: (t_B - t_A) / tau = (1 - k_s) ln(1/u0) ||W_A^uni||^{L_f/L - 1} / g_B;
    - L_f >= 3: (t_B - t_A) / tau = (1 - k_s) u0^{2-L_f} ||W_A^uni||^{L_f/L - 1} / ((L_f - 2) g_B)
      (the blow-up time of u_B from u_B(t_A)^{2-L_f} ~ (1 - k_s) u0^{2-L_f}).

    Special cases (authors' `lag_depth`): L_f = 1 (early fusion) -> exactly 1; L_f = L (late
    fusion) -> the two-layer formula 1 + (s_A - s_B) / g_B for every L.
    """
    L, Lf = check_structure(depth, fusion_layer)
    u0 = _f(_check_u0(init_scale))
    if Lf == 1:
        return jnp.ones(jnp.broadcast_shapes(jnp.shape(d.s_A), jnp.shape(u0)))
    if Lf == L:
        r = 1.0 + (d.s_A - d.s_B) / d.g_B
        return jnp.broadcast_to(r, jnp.broadcast_shapes(jnp.shape(r), jnp.shape(u0)))
    integral = unimodal_integral(L, Lf, d.s_A, d.s_B, u0)
    return 1.0 + _deep_lag(L, Lf, d, u0) / integral


def time_ratio_deep(
    stats: Statistics,
    depth: int,
    fusion_layer: int,
    init_scale: ArrayLike,
    *,
    signed: bool | None = None,
) -> Float[Array, "*batch"]:
    """`time_ratio_deep_from_drives` for general statistics (docs/theory.md §3): s_A, s_B
    (signed for scalar modalities), g_B and ||W_A^uni|| from `drives(stats)`."""
    return time_ratio_deep_from_drives(
        depth, fusion_layer, drives(stats, signed=signed), init_scale
    )


def time_ratio_deep_toy(
    depth: int, fusion_layer: int, rho: ArrayLike, ratio: ArrayLike, init_scale: ArrayLike
) -> Float[Array, ...]:
    """The authors' `sweep.lag_depth(L, L_f, rho, ratio, u0)` on the toy data (docs/theory.md
    §3): `time_ratio_deep_from_drives` with `drives_toy(rho, ratio)`. Reproduces the authors'
    `lag_depth` values (L = 4) to < 1e-3 (tests/test_theory.py)."""
    return time_ratio_deep_from_drives(depth, fusion_layer, drives_toy(rho, ratio), init_scale)


def phase_times_deep(
    stats_or_drives: Statistics | Drives,
    depth: int,
    fusion_layer: int,
    init_scale: ArrayLike,
    *,
    signed: bool | None = None,
) -> tuple[Float[Array, ...], Float[Array, ...]]:
    """Absolute leading-order (t_A, t_B) in units of tau (docs/theory.md §3): t_A = tau I
    (`unimodal_integral`) and t_B = t_A x `time_ratio_deep` (so that the L_f = 1 and L_f = L
    special cases hold exactly: t_B = t_A for early fusion; for L_f = L the ratio is the two-layer
    one, which differs from the integral-based lag by a factor 1 / (1 - u0^{L-2})).

    For L_f = 1 the integral is the early-fusion escape of the joint rank-one mode
    (u_B = k_s u + (1 - k_s) u0 is then its B component), not a per-modality time.
    """
    L, Lf = check_structure(depth, fusion_layer)
    d = (
        stats_or_drives
        if isinstance(stats_or_drives, Drives)
        else drives(stats_or_drives, signed=signed)
    )
    t_A = unimodal_integral(L, Lf, d.s_A, d.s_B, init_scale)
    return t_A, t_A * time_ratio_deep_from_drives(L, Lf, d, init_scale)
