"""Unbalanced ("lambda-balanced") starts: two-layer late fusion's phase times with a per-modality
imbalance (beyond the paper; docs/theory.md §9).

Modality m's branch has a first layer of scale b_m and a second (fusion) layer of scale a_m;
its product W_m = a_m b_m starts at w0 = u0^2 (`init_scale` u0, as in the balanced theory) and
its imbalance

    delta_m = a_m^2 - b_m^2        (positive: the layer nearer the output is the larger)

is conserved by gradient flow. With scalar modalities tau dW_m/dt = (a_m^2 + b_m^2) e_m and
(a^2 + b^2)^2 = delta^2 + 4 W^2, so

    tau dW_m/dt = sqrt(4 W_m^2 + delta_m^2) e_m,     d theta_m / dt = e_m,
    theta_m = (1/2) asinh(2 W_m / |delta_m|):

only |delta| matters. Every ln-growth of the balanced theory, (1/2) ln(W / w0), becomes
Theta(W) - Theta(w0) = (1/2) ln[(2W + sqrt(4W^2 + delta^2)) / (2 w0 + sqrt(4 w0^2 + delta^2))]
(`imbalanced_log_scale`; written so that delta = 0 is the balanced (1/2) ln(W / w0) exactly).
Rich regime |delta| << |W*|: a logarithm, ln(1/u0) while |delta| << u0^2 and
(1/2) ln(4 / |delta|) above; lazy regime |delta| >~ |W*|: O(|W*| / |delta|), no plateau.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._statistics import Statistics
from .._validation import check_finite, check_positive
from ._fixed_points import drives
from ._util import _check_u0, _f, _is_scalar, _sign

__all__ = [
    "imbalanced_log_scale",
    "phase_times_imbalanced",
    "time_ratio_imbalanced",
    "two_layer_scales",
]


def _delta(name: str, x) -> Array:
    return jnp.abs(_f(check_finite(name, x)))


def _theta(w, w0, delta):
    """Theta(w) - Theta(w0) (module docstring), exact at delta = 0."""
    return 0.5 * jnp.log(
        (2.0 * w + jnp.sqrt(4.0 * w**2 + delta**2)) / (2.0 * w0 + jnp.sqrt(4.0 * w0**2 + delta**2))
    )


def two_layer_scales(init_scale: ArrayLike, imbalance: ArrayLike) -> Float[Array, "*batch 2"]:
    """The multipliers (m_1, m_2) of `FusionDLN.init(..., init="aligned", layer_scales=...)` for
    a two-layer network with initial product u0^2 per branch (m_1 m_2 = 1) and imbalance
    delta = (m_2^2 - m_1^2) u0^2 (second layer minus first; docs/theory.md §9):
    m_2^2 = (d + sqrt(d^2 + 4)) / 2 with d = delta / u0^2 (evaluated without cancellation for
    either sign)."""
    u0 = _f(check_positive("init_scale (u0)", init_scale))
    d = _f(check_finite("imbalance", imbalance)) / u0**2
    root = jnp.sqrt(d**2 + 4.0)
    m2_sq = jnp.where(d >= 0, 0.5 * (d + root), 2.0 / (root - d))
    return jnp.stack([1.0 / jnp.sqrt(m2_sq), jnp.sqrt(m2_sq)], -1)


def imbalanced_log_scale(
    init_scale: ArrayLike, imbalance: ArrayLike, target: ArrayLike = 1.0
) -> Float[Array, ...]:
    """The growth a branch's theta = (1/2) asinh(2 W / |delta|) needs to take W from u0^2 to
    `target` (docs/theory.md §9): Theta(target) - Theta(u0^2). It replaces ln(1/u0) of the
    balanced theory (equal at imbalance 0); ~ (1/2) ln(4 target / |delta|) for
    u0^2 << |delta| << target."""
    w0 = _f(_check_u0(init_scale)) ** 2
    return _theta(_f(target), w0, _delta("imbalance", imbalance))


def phase_times_imbalanced(
    stats: Statistics,
    init_scale: ArrayLike,
    imbalance: ArrayLike,
    imbalance_B: ArrayLike | None = None,
    *,
    order: int = 0,
    signed: bool | None = None,
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """(t_A, t_B) of two-layer late fusion from per-layer scale u0 (W_m(0) = u0^2) with
    imbalance delta_A = `imbalance` and delta_B = `imbalance_B` (default: the same), tau = 1
    (docs/theory.md §9; beyond the paper). NaN where B would be learned first.

    `order=0` (leading order; signed drives of `drives`): with l_m = `imbalanced_log_scale`
    (u0, delta_m),

        t_A = l_A / s_A,    t_B = t_A + (l_B - s_B t_A) / g_B,
        t_B / t_A = 1 + (s_A l_B / l_A - s_B) / g_B,

    the balanced formulas (docs/theory.md §2) with ln(1/u0) replaced per modality. Equal
    imbalances leave the ratio unchanged at this order while shortening both times.

    `order=1` (scalar modalities): the O(1) terms of `phase_times_two_layer(order=1)` carried
    over exactly: t_A is A's exact single-branch time to |W_A^uni| / 2; B's drive switches at
    t* = (Theta_A(|W_A^uni|) - Theta_A(u0^2)) / s_A; B then climbs theta to half its final value
    at rate g_B, slowed by its own approach (J_1) and by A relaxing along its slow manifold
    through A's preconditioner sqrt(4 W_A^2 + delta_A^2) (J_2). Exact for rho = 0 at any
    imbalance; equal to `phase_times_two_layer(order=1)` at imbalance 0.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (leading) or 1 (with O(1) terms); got {order!r}.")
    u0 = _f(_check_u0(init_scale))
    dA = _delta("imbalance", imbalance)
    dB = dA if imbalance_B is None else _delta("imbalance_B", imbalance_B)
    d = drives(stats, signed=signed)
    w0 = u0**2
    t_A0 = _theta(1.0, w0, dA) / d.s_A
    lag0 = (_theta(1.0, w0, dB) - d.s_B * t_A0) / d.g_B
    if order == 0:
        t_A, t_B = t_A0, t_A0 + lag0
    else:
        if not _is_scalar(stats):
            raise ValueError(
                "phase_times_imbalanced(order=1) needs scalar modalities and output; got "
                f"(d_A, d_B, d_out) = ({stats.d_A}, {stats.d_B}, {stats.d_out})."
            )
        t_A, t_B = _first_order(stats, d, w0, dA, dB)
    ok = lag0 > 0
    return jnp.where(ok, t_A, jnp.nan), jnp.where(ok, t_B, jnp.nan)


def _single_branch(w, U, delta):
    """F(w) with dF/dw = 1 / ((U - w) sqrt(4 w^2 + delta^2)) (w < U)."""
    R = jnp.sqrt(4.0 * U**2 + delta**2)
    P = jnp.sqrt(4.0 * w**2 + delta**2)
    return jnp.log((R * P + 4.0 * U * w + delta**2) / (U - w)) / R


def _own_approach(W, delta):
    """int_0^{W/2} y / ((W - y) sqrt(4 y^2 + delta^2)) dy in closed form, finite at delta = 0
    (where it is (1/2) ln 2)."""
    Y = 0.5 * W
    R = jnp.sqrt(4.0 * W**2 + delta**2)
    P = jnp.sqrt(4.0 * Y**2 + delta**2)
    main = (W / R) * jnp.log(W * (R * P + 4.0 * W * Y + delta**2) / ((W - Y) * (R + delta)))
    safe = jnp.where(delta > 0, delta, 1.0)
    tail = jnp.where(delta > 0, delta**2 * jnp.log(safe) / (2.0 * R * (R + 2.0 * W)), 0.0)
    return main - 0.5 * jnp.log(2.0 * Y + P) + tail


def _slow_manifold(W, U, c, delta):
    """int_0^{W/2} dy / ((W - y) sqrt(4 (U - c y)^2 + delta^2)) in closed form (Q(W) > 0)."""
    X = U - c * W
    QW = 4.0 * X**2 + delta**2
    dQ = -8.0 * c * X
    rQ = jnp.sqrt(QW)

    def G(y):
        Qy = 4.0 * (U - c * y) ** 2 + delta**2
        return jnp.log((2.0 * QW + dQ * (y - W) + 2.0 * rQ * jnp.sqrt(Qy)) / (W - y)) / rQ

    return G(0.5 * W) - G(0.0)


def _first_order(stats: Statistics, d, w0, dA, dB):
    """`phase_times_imbalanced(..., order=1)` in oriented coordinates (A along Sigma_yxA, B
    along W*_B; docs/theory.md §9)."""
    sA = stats.sigma_A[..., 0, 0]
    sAB = stats.sigma_AB[..., 0, 0]
    U = d.w_uni
    W = jnp.abs(stats.optimal_weights()[..., 0, 1])
    c = _sign(stats.sigma_yxA[..., 0, 0]) * _sign(stats.optimal_weights()[..., 0, 1]) * sAB / sA
    S = stats.sigma_B[..., 0, 0] - sAB**2 / sA
    t_A = (_single_branch(0.5 * U, U, dA) - _single_branch(w0, U, dA)) / sA
    t_star = _theta(U, w0, dA) / d.s_A
    climb = (_theta(0.5 * W, w0, dB) - d.s_B * t_star) / d.g_B
    j1 = _own_approach(W, dB) / d.g_B
    j2 = c**2 / S * _slow_manifold(W, U, c, dA)
    return t_A, t_star + climb + j1 + j2


def time_ratio_imbalanced(
    stats: Statistics,
    init_scale: ArrayLike,
    imbalance: ArrayLike,
    imbalance_B: ArrayLike | None = None,
    *,
    order: int = 0,
    signed: bool | None = None,
) -> Float[Array, "*batch"]:
    """t_B / t_A of `phase_times_imbalanced` (docs/theory.md §9). Leading order:
    1 + (s_A l_B / l_A - s_B) / g_B, the balanced 1 + (s_A - s_B) / g_B when delta_A = delta_B
    (and u0^2 << |delta|, or delta = 0); B's imbalance alone shortens the unimodal phase, A's
    alone lengthens it."""
    t_A, t_B = phase_times_imbalanced(
        stats, init_scale, imbalance, imbalance_B, order=order, signed=signed
    )
    return t_B / t_A
