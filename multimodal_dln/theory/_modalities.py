"""M >= 2 modalities: when each is learned, and in which order (docs/theory.md §11; beyond the
papers, generalizing Zhang et al. 2024's two-modality phase times, docs/theory.md §2, §3).

Leading order in small u0, balanced aligned start (`FusionDLN.init(..., init="aligned",
align_to=stats)`): every unlearned modality m's per-layer scale grows on the drive
a_m = sgn_m g_m(S) v_S^{L - L_f}, with S the modalities already learned (sitting at their
restricted optimum W_S), g_m(S) the residual drive (`multimodal_dln._modalities`), sgn_m the
sign of W*_m (scalar modalities; norms otherwise) and v_S the shared layers' scale. Modality m
is learned when the accumulated drive uses up its distance D_m, the same log-scale for every
modality. Piecewise-constant drives make the times closed-form: a sequence of M linear
races.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from .._modalities import block_norms, residual_drive, restricted_optimum
from .._statistics import Statistics
from .._validation import check_structure
from ._deep import _GL_NODES, _GL_PANELS
from ._util import _check_u0, _f

__all__ = ["phase_times_modalities"]

_gl_x, _gl_w = np.polynomial.legendre.leggauss(_GL_NODES)


def _distance(Lf, u0):
    """The log-scale every modality must climb: ln(1/u0) for L_f = 2, else the blow-up integral
    int_{u0}^{1} du / u^{L_f - 1} = (u0^{2 - L_f} - 1) / (L_f - 2) (as `theory.phase_times_deep`;
    the -1 is kept, so late fusion's t_(1) is exact to O(u0^{L-2}))."""
    if Lf == 2:
        return jnp.log(1.0 / u0)
    return (u0 ** (2.0 - Lf) - 1.0) / (Lf - 2.0)


def _first_escape(L, Lf, s, u0):
    """t_1 / tau: the first escape, the integral formula of docs/theory.md §3 with the shared
    layers' scale v^2 = sum_m u_m(u)^2 over every modality's partner scale u_m(u) (k_m =
    s_m / s_1; M = 2 is `theory.unimodal_integral`). Late fusion: u0^{2-L} / ((L - 2) s_1),
    ln(1/u0) / s_1 for L = 2."""
    s1 = jnp.max(s)
    if Lf == L:
        return _distance(L, u0) / s1
    k = s / s1
    x0 = jnp.log(u0)
    edges = jnp.linspace(0.0, 1.0, _GL_PANELS + 1)
    mid, half = 0.5 * (edges[:-1] + edges[1:]), 0.5 * (edges[1:] - edges[:-1])
    frac = mid[:, None] + half[:, None] * jnp.asarray(_gl_x)[None, :]
    w = half[:, None] * jnp.asarray(_gl_w)[None, :]
    z = (-x0 * frac)[..., None]  # ln(u / u0) >= 0, one column per modality
    if Lf == 2:
        log_r = k * z
    else:
        p = 2.0 - Lf
        log_r = jnp.log(jnp.abs(k * jnp.exp(p * z) + (1.0 - k))) / p
    log_sq = 2.0 * x0 + jax.nn.logsumexp(2.0 * log_r, axis=-1)  # ln sum_m u_m(u)^2
    x = x0 * (1.0 - frac)
    f = jnp.exp((2.0 - Lf) * x - jnp.log(s1) - 0.5 * (L - Lf) * log_sq)
    return -x0 * jnp.sum(w * f)


def _one(stats: Statistics, u0, L: int, Lf: int, order: int):
    """(times (M,), order (M,)) of one member; `order=1` adds the plateau's log-scale to each
    distance (two-layer late fusion)."""
    n = stats.n_modalities
    scalar = stats.d == n and stats.d_out == 1
    w_star = stats.optimal_weights()
    sgn = jnp.where(w_star[0] < 0, -1.0, 1.0) if scalar else jnp.ones(n)

    def drive(learned):
        g = residual_drive(stats, learned)
        return sgn * g[0] if scalar else block_norms(stats, g)

    def extra(learned):  # order 1: half the log of the plateau each candidate rises to
        if order == 0:
            return jnp.zeros(n)
        eye = jnp.eye(n, dtype=bool)
        w_next = jax.vmap(lambda e: restricted_optimum(stats, learned | e))(eye)
        return 0.5 * jnp.log(jnp.diagonal(block_norms(stats, w_next)))

    s = drive(jnp.zeros(n, bool))
    first = jnp.argmax(s)
    if Lf in (2, L):
        ell = _distance(Lf, u0)
    else:  # intermediate L_f >= 3: u0^{2-L_f} / (L_f - 2), as `time_ratio_deep`'s lag (§3)
        ell = u0 ** (2.0 - Lf) / (Lf - 2.0)
    t_first = t = _first_escape(L, Lf, s, u0)  # t: when the drives switch
    dist = (1.0 - s / s[first]) * ell
    if order == 1:  # the logistic's half-point (docs/theory.md §2 "first-order terms")
        log_w = 2.0 * extra(jnp.zeros(n, bool))[first]  # ln |W_(1)^uni|
        t = (ell + 0.5 * log_w) / s[first]
        t_first = jnp.log(jnp.expm1(log_w + 2.0 * ell)) / (2.0 * s[first])
        dist = ell - s * t
    learned = jnp.arange(n) == first
    times, seq = jnp.full(n, jnp.nan).at[first].set(t_first), [first]
    consistent = jnp.asarray(True)
    for _ in range(n - 1):
        w_s = restricted_optimum(stats, learned)
        blocks = block_norms(stats, w_s)
        if scalar:  # a learned rank-one branch cannot change sign: else outside the theory
            consistent &= jnp.all(~learned | (sgn * w_s[0] >= 0))
        v = jnp.sum(jnp.where(learned, blocks, 0.0) ** (2.0 / Lf)) ** (Lf / (2.0 * L))
        a = drive(learned) * v ** (L - Lf)
        left = dist + extra(learned)
        wait = jnp.where(~learned & (a > 0), left / jnp.where(a > 0, a, 1.0), jnp.inf)
        j = jnp.argmin(wait)
        t = t + wait[j]
        dist = jnp.where(learned, dist, dist - a * wait[j])
        times, learned, seq = times.at[j].set(t), learned.at[j].set(True), seq + [j]
    ok = consistent & jnp.all(jnp.isfinite(times)) & (s[first] > 0)
    return jnp.where(ok, times, jnp.nan), jnp.where(ok, jnp.stack(seq), -1)


def phase_times_modalities(
    stats: Statistics,
    init_scale: ArrayLike,
    *,
    depth: int = 2,
    fusion_layer: int | None = None,
    order: int = 0,
) -> tuple[Float[Array, "*batch M"], Int[Array, "*batch M"]]:
    """(t_m per modality, learning order) for M >= 2 modalities, leading order in small u0
    (docs/theory.md §11), gradient-flow time (tau = 1).

    Late fusion (`fusion_layer` None or = `depth`): with ell = ln(1/u0) (L = 2) or
    u0^{2-L} / (L - 2), modality m's distance starts at ell and shrinks at its current drive
    a_m = sgn_m g_m(S); the one that first reaches 0 is learned next, and S grows by it:

        t_(1) = ell / s_(1),   t_(k+1) = t_(k) + min_m D_m / a_m(S_k),   D_m -= a_m dt.

    So every t_(k) is ell times a number fixed by the statistics: the ratios t_(k) / t_(1) do
    not depend on u0 or on the depth. M = 2 is `phase_times_two_layer` (order 0).
    Intermediate fusion (2 <= L_f < L): t_(1) is the integral formula with the shared layers'
    scale summed over all M partner scales, the distances start at (1 - s_m / s_(1)) ell_f
    (ell_f as ell with L_f for L), and the drives carry the shared layers' factor
    v_S^{L - L_f}, v_S = (sum_{j in S} |W_{S,j}|^{2 / L_f})^{L_f / (2 L)} (M = 2:
    `time_ratio_deep`'s lag). Early fusion (L_f = 1) learns every modality at once (no phase).

    `order=1` (two-layer late fusion only) adds the O(1) terms of `phase_times_two_layer(...,
    order=1)` that carry over: each distance is lengthened by half the log of the plateau its
    modality rises to (|W_{S + m, m}|, the logistic's half-point), and t_(1) is the logistic's
    exact half-rise. The slow-manifold term of the M = 2 formula is not included.

    NaN times and order -1 mark members outside the theory's assumptions: a learned modality
    whose restricted optimum has the other sign than its branch (scalar modalities), or one
    that is never driven up. `stats` may be batched; `init_scale` broadcasts against the batch.
    """
    L, Lf = check_structure(depth, depth if fusion_layer is None else fusion_layer)
    if Lf == 1:
        raise ValueError(
            "fusion_layer = 1 (early fusion) learns all modalities together in one joint "
            "mode: there are no phase times per modality (docs/theory.md §3); use L_f >= 2."
        )
    if order not in (0, 1) or (order == 1 and (L, Lf) != (2, 2)):
        raise ValueError(
            "order must be 0 (leading), or 1 for two-layer late fusion (depth 2, fusion_layer "
            f"2); got order {order!r} with depth {L}, fusion_layer {Lf}."
        )
    u0 = _f(_check_u0(init_scale))
    batch = stats.batch_shape
    u0 = jnp.broadcast_to(u0, batch)
    one = functools.partial(_one, L=L, Lf=Lf, order=order)
    for _ in batch:
        one = jax.vmap(one)
    return one(stats, u0)
