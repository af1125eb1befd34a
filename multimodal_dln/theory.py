"""Closed-form results of Zhang, Latham & Saxe (2024), vectorized and in float64.

Every function is pure and works under `jax.jit` / `jax.vmap`: array arguments (statistics,
rho, ratio, u0, ...) may be batched; structural integers (`depth` L, `fusion_layer` L_f) are
Python ints. Unless a docstring says otherwise results are *leading order* in the
initialization scale u0 -> 0 (u0 is the per-layer scale: W^tot(0) ~ u0^L, digest 1.4), in
gradient-flow time with tau = 1 (for gradient descent, t = epochs x lr; digest 1.3). The paper's
equation numbers are unknown (digest 0); each docstring cites the digest section instead.

Notation (digest 2): s_m = ||Sigma_yxm||, W_A^uni = Sigma_yxA Sigma_A^-1,
g_B = ||Sigma_yxB - W_A^uni Sigma_AB||, k_s = s_B / s_A; modality A is the one learned first.

Sign convention for scalar modalities and output (digest 2.3 "sign caveat", 2.6 "toy plug-in"):
the norms are replaced by *signed* projections. Modality A is oriented along Sigma_yxA (so
s_A = |Sigma_yxA| and the phase-1 fixed point is |W_A^uni|), modality B along the direction it
must finally reach, sign(g_B) = sign(W*_B) (g_B = W*_B (Sigma_B - Sigma_BA Sigma_A^-1 Sigma_AB),
so the two signs agree), giving s_B = Sigma_yxB sign(W*_B), which is negative when B's initial
drive points away from its final value (toy: rho < -1/ratio). This is the authors' `lag_depth`
plug-in (s_A = r^2 + rho r, s_B = 1 + rho r) and agrees with simulation where the norm form
does not (digest 2.3). For vector modalities the norm form is used; it is only approximate there
(see `time_ratio_two_layer`).

The reduced rank-one dynamics these formulas are the u0 -> 0 limit of is in
`multimodal_dln._reduced_dynamics` (re-exported here: `reduced_flow`, ...).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._validation import check, check_open_interval, check_positive
from ._reduced_dynamics import reduced_flow as reduced_flow
from ._reduced_dynamics import reduced_initial_state as reduced_initial_state
from ._reduced_dynamics import reduced_state_from_network as reduced_state_from_network
from ._reduced_dynamics import reduced_weights as reduced_weights
from ._statistics import Statistics

__all__ = [
    # fixed points and losses (2.1)
    "fixed_point_weights",
    "fixed_point_loss",
    "plateau_loss",
    "plateau_loss_ratio_toy",
    # drives (2.3, 2.6)
    "Drives",
    "drives",
    "drives_toy",
    "learned_first",
    "has_unimodal_phase",
    # two-layer late fusion (2.3)
    "time_ratio_toy",
    "time_ratio_two_layer",
    "time_ratio_two_layer_gd",
    "learning_time_two_layer",
    "phase_times_two_layer",
    # deep / intermediate fusion (2.6)
    "partner_scale",
    "unimodal_integral",
    "phase_times_deep",
    "time_ratio_deep",
    "time_ratio_deep_toy",
    "time_ratio_deep_from_drives",
    # misattribution (2.4) and superficial preference (2.5)
    "misattribution_toy",
    "misattribution",
    "prioritization_boundary",
    "contribution_boundary",
    "superficial_preference",
    # overparametrized regime (2.8)
    "min_norm_solution",
    "generalization_error",
    "unimodal_generalization_error",
    "early_fusion_final_error",
    "late_fusion_final_solution",
    # helpers
    "swap_modalities",
    "orient_first_learned",
    # reduced dynamics (re-exported)
    "reduced_flow",
    "reduced_initial_state",
    "reduced_state_from_network",
    "reduced_weights",
]


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


def _norm(a) -> Array:
    return jnp.linalg.norm(a, axis=(-2, -1))


def _is_scalar(stats: Statistics) -> bool:
    return stats.d_A == 1 and stats.d_B == 1 and stats.d_out == 1


def _check_u0(u0):
    u0 = check_positive("init_scale (u0)", u0)
    return check(
        u0,
        jnp.asarray(u0) >= 1.0,
        f"init_scale (u0) must lie in (0, 1) for the small-init theory; got {u0!r}.",
    )


# ------------------------------------------------------------------------------------------------
# 2.1 Fixed points and loss plateaus
# ------------------------------------------------------------------------------------------------
def fixed_point_weights(stats: Statistics, point: str) -> Float[Array, "*batch o d"]:
    """[W_A^tot, W_B^tot] at a fixed point of late/intermediate fusion (digest 2.1):

    - "0": M_0 = (0, 0);
    - "A": M_A = (Sigma_yxA Sigma_A^-1, 0) = (W_A^uni, 0), the unimodal plateau;
    - "B": M_B = (0, Sigma_yxB Sigma_B^-1);
    - "*": M_* = Sigma_yx Sigma^+ (the global minimum; min-norm if Sigma is singular).

    Pseudo-inverses are used, so rank-deficient blocks give the minimum-norm fixed point.
    """
    shape = stats.sigma_yx.shape
    if point == "0":
        return jnp.zeros(shape, stats.sigma_yx.dtype)
    if point == "*":
        return stats.optimal_weights()
    if point in ("A", "B"):
        w = stats.unimodal_weights(point)
        zeros = jnp.zeros(w.shape[:-1] + ((stats.d_B,) if point == "A" else (stats.d_A,)), w.dtype)
        return jnp.concatenate([w, zeros] if point == "A" else [zeros, w], axis=-1)
    raise ValueError(f"point must be one of '0', 'A', 'B', '*'; got {point!r}.")


def fixed_point_loss(stats: Statistics, point: str) -> Float[Array, "*batch"]:
    """Training loss at a fixed point (digest 2.1), L = 1/2 <(y - y_hat)^2>:

    - L(M_0) = 1/2 tr Sigma_yy;
    - L(M_A) = 1/2 (tr Sigma_yy - Sigma_yxA Sigma_A^-1 Sigma_yxA^T), L(M_B) likewise;
    - L(M_*) = 1/2 (tr Sigma_yy - Sigma_yx Sigma^-1 Sigma_yx^T) (0 for noiseless full-rank data).
    """
    return stats.loss(fixed_point_weights(stats, point))


def plateau_loss(stats: Statistics, modality: str = "A") -> Float[Array, "*batch"]:
    """Loss on the unimodal plateau M_A (or M_B): L(M_A) = 1/2 (tr Sigma_yy - Sigma_yxA Sigma_A^-1
    Sigma_yxA^T) (digest 2.1)."""
    if modality not in ("A", "B"):
        raise ValueError(f"modality must be 'A' or 'B'; got {modality!r}.")
    return fixed_point_loss(stats, modality)


def plateau_loss_ratio_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, ...]:
    """L(M_A) / L(M_0) = (1 - rho^2) / (ratio^2 + 2 rho ratio + 1) on the toy data with teacher
    (1, 1) and no noise (digest 2.1): 0.200 at (ratio 2, rho 0), 0.107 at (2, 0.5)."""
    rho, ratio = _f(rho), _f(ratio)
    return (1.0 - rho**2) / (ratio**2 + 2.0 * rho * ratio + 1.0)


# ------------------------------------------------------------------------------------------------
# Drives
# ------------------------------------------------------------------------------------------------
class Drives(NamedTuple):
    """(s_A, s_B, g_B, w_uni): the four numbers the unimodal-phase theory depends on (digest 2.6).

    - s_A = ||Sigma_yxA||, s_B = ||Sigma_yxB|| (signed for scalar modalities, module docstring);
    - g_B = ||Sigma_yxB - W_A^uni Sigma_AB||, B's drive once A sits at M_A;
    - w_uni = ||W_A^uni||, the size of A's plateau weights.

    A NamedTuple, hence a pytree: `jax.vmap(theory.drives)(stats)` works.
    """

    s_A: Array
    s_B: Array
    g_B: Array
    w_uni: Array


def _sign(x):
    return jnp.where(x < 0, -1.0, 1.0)


def drives(stats: Statistics, *, signed: bool | None = None) -> Drives:
    """The drives (s_A, s_B, g_B, ||W_A^uni||) of general statistics (digest 2.3, 2.6).

    `signed=None` (default) uses the signed projections for scalar modalities and output (the
    authors' convention, module docstring) and Frobenius norms otherwise; `signed=False` forces
    norms (the authors' `lag_twolayer`), `signed=True` requires scalar modalities.
    Output arrays have the statistics' batch shape.
    """
    scalar = _is_scalar(stats)
    if signed is None:
        signed = scalar
    if signed and not scalar:
        raise ValueError(
            "signed=True needs scalar modalities and output (d_A = d_B = d_out = 1); got "
            f"(d_A, d_B, d_out) = ({stats.d_A}, {stats.d_B}, {stats.d_out})."
        )
    w_uni = stats.unimodal_weights("A")
    g_vec = stats.sigma_yxB - w_uni @ stats.sigma_AB
    if signed:
        syxA, syxB, g = stats.sigma_yxA[..., 0, 0], stats.sigma_yxB[..., 0, 0], g_vec[..., 0, 0]
        sgn_A, sgn_B = _sign(syxA), _sign(g)
        return Drives(syxA * sgn_A, syxB * sgn_B, g * sgn_B, jnp.abs(w_uni[..., 0, 0]))
    return Drives(_norm(stats.sigma_yxA), _norm(stats.sigma_yxB), _norm(g_vec), _norm(w_uni))


def drives_toy(rho: ArrayLike, ratio: ArrayLike) -> Drives:
    """Toy-data drives (digest 2.6 'toy plug-in', sigma_B = 1, teacher (1, 1)):
    s_A = r^2 + rho r, s_B = 1 + rho r (signed), g_B = 1 - rho^2, ||W_A^uni|| = 1 + rho / r."""
    rho = check_open_interval("rho", rho, -1.0, 1.0)
    ratio = check_positive("ratio", ratio)
    rho, ratio = _f(rho), _f(ratio)
    return Drives(ratio**2 + rho * ratio, 1.0 + rho * ratio, 1.0 - rho**2, 1.0 + rho / ratio)


def learned_first(stats: Statistics) -> Int[Array, "*batch"]:
    """Which modality is learned first: 0 for A, 1 for B (digest 2.3, 2.5).

    In late and intermediate fusion each branch escapes the origin at the rate of its own
    input-output correlation, so the modality with the larger ||Sigma_yxm|| goes first (ties: A).
    This is not necessarily the modality that contributes more (`superficial_preference`).
    """
    return jnp.where(_norm(stats.sigma_yxB) > _norm(stats.sigma_yxA), 1, 0)


def has_unimodal_phase(
    stats: Statistics, depth: int, fusion_layer: int, *, rtol: float = 1e-9
) -> Bool[Array, "*batch"]:
    """Whether training goes through a unimodal phase (a plateau at M_A or M_B; digest 2.3, 2.7).

    Early fusion (L_f = 1): never (one joint escape along Sigma_yx). Late and intermediate
    fusion (L_f >= 2): exactly when the two modalities' drives differ, ||Sigma_yxA|| !=
    ||Sigma_yxB|| (relative tolerance `rtol`); its length grows without bound as g_B -> 0.
    """
    _check_structure(depth, fusion_layer)
    s_A, s_B = _norm(stats.sigma_yxA), _norm(stats.sigma_yxB)
    differ = jnp.abs(s_A - s_B) > rtol * jnp.maximum(s_A, s_B)
    return differ & (fusion_layer >= 2)


def _check_structure(depth, fusion_layer):
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth (L) must be a positive integer; got {depth!r}.")
    if (
        isinstance(fusion_layer, bool)
        or not isinstance(fusion_layer, (int, np.integer))
        or not 1 <= fusion_layer <= depth
    ):
        raise ValueError(
            f"fusion_layer (L_f) must be an integer in [1, depth] = [1, {depth}]; "
            f"got {fusion_layer!r}."
        )
    return int(depth), int(fusion_layer)


# ------------------------------------------------------------------------------------------------
# 2.3 Two-layer late fusion
# ------------------------------------------------------------------------------------------------
def time_ratio_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, ...]:
    """t_B / t_A = 1 + (ratio^2 - 1) / (1 - rho^2) for two-layer late fusion on the toy data
    (digest 2.3; ratio = sigma_A / sigma_B, teacher w = (1, 1)). Early fusion: 1."""
    rho, ratio = jnp.asarray(rho, dtype=float), jnp.asarray(ratio, dtype=float)
    return 1.0 + (ratio**2 - 1.0) / (1.0 - rho**2)


def time_ratio_two_layer(
    stats: Statistics, *, signed: bool | None = None
) -> Float[Array, "*batch"]:
    """Two-layer late fusion, general statistics (digest 2.3; authors' `sweep.lag_twolayer`):

        t_B / t_A = 1 + (||Sigma_yxA|| - ||Sigma_yxB||) / ||Sigma_yxB - W_A^uni Sigma_AB||.

    Derivation (digest 2.3): A escapes at rate s_A, t_A = ln(1/u0) / s_A; meanwhile
    ln ||W_B|| grows at rate s_B; after t_A B's drive is g_B, so
    t_B = t_A + (ln(1/u0) - s_B t_A) / g_B. Leading order: independent of u0.

    For scalar modalities and output the signed form (module docstring) is used by default,
    1 + (s_A - s_B) / g_B with s_B = Sigma_yxB sign(W*_B): the toy closed form, correct also
    when Sigma_yxB < 0 (digest 2.3 sign caveat).

    For vector modalities the norm form is the u0 -> 0 limit but converges slowly: B's branch
    grows along Sigma_yxB during phase 1 and must rotate towards g_B afterwards. For a rank-one
    branch this adds ln(2 / (1 + cos theta)) / g_B to t_B - t_A, theta the angle between
    Sigma_yxB and Sigma_yxB - W_A^uni Sigma_AB (the exact solution of the phase-2 rotation,
    docs/reproduction.md), which is O(1) against (1 - k_s) ln(1/u0) / g_B: small for aligned
    drives, large as theta -> 180 deg (the scalar case with Sigma_yxB < 0 is theta = 180 deg,
    where only the signed form holds).
    """
    d = drives(stats, signed=signed)
    return 1.0 + (d.s_A - d.s_B) / d.g_B


def time_ratio_two_layer_gd(
    stats: Statistics, lr: ArrayLike, *, signed: bool | None = None
) -> Float[Array, "*batch"]:
    """Leading-order t_B / t_A of two-layer late fusion trained by full-batch gradient descent
    at learning rate `lr` (beyond the paper; explains why the authors' GD runs at lr 0.04 sit
    10-20 % below the gradient-flow formula, digest 4.1 item 7).

    Near a small balanced start each layer of a branch with drive s is multiplied by (1 + lr s)
    per step (gradient flow: e^{s dt}), so in time t = steps x lr every exponential rate s of
    the derivation of `time_ratio_two_layer` becomes s~ = ln(1 + lr s) / lr:

        t_B / t_A = 1 + (s~_A - s~_B) / g~_B.

    Strong drives are slowed most (lr s_A = 0.36 at ratio 3: -15 %), so A's escape is delayed
    relative to B's and the ratio drops (ratio 3, rho 0: 7.84 instead of 9). Tends to
    `time_ratio_two_layer` as lr -> 0; needs lr s > -1.
    """
    d = drives(stats, signed=signed)
    lr = _f(check_positive("lr (learning rate)", lr))

    def rate(x):
        return jnp.log1p(lr * x) / lr

    return 1.0 + (rate(d.s_A) - rate(d.s_B)) / rate(d.g_B)


def learning_time_two_layer(stats: Statistics, init_scale: ArrayLike) -> Float[Array, "*batch"]:
    """t_A ~ ln(1/u0) / ||Sigma_yxA|| (gradient-flow time, tau = 1; digest 2.3), with u0 the
    per-layer scale (W_A^tot(0) ~ u0^2). Leading order: O(1) / s_A corrections are dropped."""
    u0 = jnp.asarray(init_scale, dtype=float)
    return jnp.log(1.0 / u0) / jnp.linalg.norm(stats.sigma_yxA, axis=(-2, -1))


def phase_times_two_layer(
    stats: Statistics, init_scale: ArrayLike, *, order: int = 0, signed: bool | None = None
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """(t_A, t_B) for two-layer late fusion started at per-layer scale u0 (digest 2.3), tau = 1.

    `order=0` (leading order, digest 2.3): with l = ln(1/u0),

        t_A = l / s_A,    t_B = t_A + (l - s_B t_A) / g_B.

    `order=1` adds the O(1) terms for balanced aligned initialization (W_m(0) = u0^2), derived
    here (beyond the paper) for scalar modalities; the exact `reduced_flow` agrees in t_B/t_A
    to < 1.5e-3 at u0 = 1e-4 and < 3e-4 at u0 <= 1e-12, where the leading order is off by up to
    1.5 % (tests/test_reduced_dynamics.py; docs/reproduction.md, `init-convergence`):

    - phase 1 is the logistic W_A(t) = W_A^uni / (1 + (W_A^uni / u0^2 - 1) e^{-2 s_A t}), so
      t_A = ln(|W_A^uni| / u0^2 - 1) / (2 s_A);
    - meanwhile ln u_B = ln u0 + int_0^t (Sigma_yxB - W_A Sigma_AB) dt', which after A's
      transition is ln u0 + s_B t* + g_B (t - t*), t* = ln(|W_A^uni| / u0^2) / (2 s_A);
    - in phase 2 A follows B on its slow manifold W_A = (Sigma_yxA - W_B Sigma_AB) / Sigma_A,
      and A's relaxation feeds back through the preconditioner: with c = Sigma_AB / Sigma_A,
      S = Sigma_B - c Sigma_AB, e_B (1 + c^2 |W_B| / |W_A|) = g_B - S W_B, a logistic
      slowed near its end. Integrating to the half-point |W*_B| / 2:

        t_B = t* + (l + 1/2 ln |W*_B| - s_B t*) / g_B
                 + c^2 / (2 S |W*_A|) ln(|W_A^uni + W*_A| / |W_A^uni|).

    For vector modalities `order=1` applies the same expressions to norms (an approximation).
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (leading) or 1 (with O(1) terms); got {order!r}.")
    u0 = _check_u0(init_scale)
    ell = jnp.log(1.0 / _f(u0))
    d = drives(stats, signed=signed)
    if order == 0:
        t_A = ell / d.s_A
        return t_A, t_A + (ell - d.s_B * t_A) / d.g_B
    w_star = stats.optimal_weights()
    w_star_A, w_star_B = w_star[..., : stats.d_A], w_star[..., stats.d_A :]
    w_uni_vec = stats.unimodal_weights("A")
    log_w0 = -2.0 * ell
    t_A = (jnp.log(jnp.expm1(jnp.log(d.w_uni) - log_w0))) / (2.0 * d.s_A)
    t_star = (jnp.log(d.w_uni) - log_w0) / (2.0 * d.s_A)
    t_B = t_star + (ell + 0.5 * jnp.log(_norm(w_star_B)) - d.s_B * t_star) / d.g_B
    sA = stats.sigma_A
    c2 = _norm(jnp.linalg.pinv(sA) @ stats.sigma_AB) ** 2
    schur = (
        stats.sigma_B - jnp.swapaxes(stats.sigma_AB, -1, -2) @ jnp.linalg.pinv(sA) @ stats.sigma_AB
    )
    schur = jnp.linalg.norm(schur, ord=2, axis=(-2, -1)) if stats.d_B > 1 else schur[..., 0, 0]
    slow = c2 / (2.0 * schur * _norm(w_star_A)) * jnp.log(_norm(w_uni_vec + w_star_A) / d.w_uni)
    return t_A, t_B + slow


# ------------------------------------------------------------------------------------------------
# 2.6 Deep networks: the integral formula
# ------------------------------------------------------------------------------------------------
_GL_PANELS = 48
_GL_NODES = 24
_gl_x, _gl_w = np.polynomial.legendre.leggauss(_GL_NODES)


def partner_scale(
    u: ArrayLike, init_scale: ArrayLike, k_s: ArrayLike, fusion_layer: int
) -> Float[Array, ...]:
    """u_B as a function of u_A = u before A is learned (digest 2.6 invariant), k_s = s_B / s_A:

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
    """t_A / tau: the time for A's per-layer scale to grow from u0 to 1 (digest 2.6),

        I = int_{u0}^{1} du / [ s_A u^{L_f-1} (u^2 + u_B(u)^2)^{(L-L_f)/2} ],

    with u_B(u) from `partner_scale` (k_s = s_B / s_A; s_B signed for scalar modalities). It is
    the solution of the early-time reduced dynamics tau du_A/dt = s_A u_A^{L_f-1} v^{L-L_f},
    v^2 = u_A^2 + u_B^2 (B's drive likewise), i.e. the error term is replaced by its initial
    value Sigma_yx. Special cases: L_f = L gives (u0^{2-L} - 1) / ((L - 2) s_A) (L >= 3) and
    ln(1/u0) / s_A (L = 2).

    Quadrature: substitute u = e^x (the integrand is sharply peaked at u0 on the u axis and
    smooth, at most exponential, on the x axis) and apply composite Gauss-Legendre with 48
    panels x 24 nodes on [ln u0, 0], integrand in log space (no overflow down to u0 = 1e-30).
    Fixed shapes, so it jits and vmaps; agrees with `scipy.integrate.quad` to < 1e-10 relative
    (tests/test_theory.py). Valid while B does not overtake A (k_s < 1).
    """
    L, Lf = _check_structure(depth, fusion_layer)
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
    """(t_B - t_A) / tau after A is learned (digest 2.6), for 2 <= L_f < L."""
    L, Lf = depth, fusion_layer
    k_s = d.s_B / d.s_A
    post = d.w_uni ** (Lf / L - 1.0)
    if Lf == 2:
        return (1.0 - k_s) * jnp.log(1.0 / u0) * post / d.g_B
    return (1.0 - k_s) * u0 ** (2.0 - Lf) * post / ((Lf - 2.0) * d.g_B)


def time_ratio_deep_from_drives(
    depth: int, fusion_layer: int, d: Drives, init_scale: ArrayLike
) -> Float[Array, ...]:
    """Deep / intermediate-fusion t_B / t_A from the drives (digest 2.6):

        t_B / t_A = 1 + (t_B - t_A) / (tau I),     I = `unimodal_integral`,

    with B's remaining time once A sits at M_A (shared layers at scale ||W_A^uni||^{1/L}, so B's
    drive is g_B ||W_A^uni||^{1 - L_f/L} u_B^{L_f-1}):

    - L_f = 2: (t_B - t_A) / tau = (1 - k_s) ln(1/u0) ||W_A^uni||^{L_f/L - 1} / g_B;
    - L_f >= 3: (t_B - t_A) / tau = (1 - k_s) u0^{2-L_f} ||W_A^uni||^{L_f/L - 1} / ((L_f - 2) g_B)
      (the blow-up time of u_B from u_B(t_A)^{2-L_f} ~ (1 - k_s) u0^{2-L_f}).

    Special cases (authors' `lag_depth`): L_f = 1 (early fusion) -> exactly 1; L_f = L (late
    fusion) -> the two-layer formula 1 + (s_A - s_B) / g_B for every L.
    """
    L, Lf = _check_structure(depth, fusion_layer)
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
    """`time_ratio_deep_from_drives` for general statistics (digest 2.6): s_A, s_B (signed for
    scalar modalities), g_B and ||W_A^uni|| from `drives(stats)`."""
    return time_ratio_deep_from_drives(
        depth, fusion_layer, drives(stats, signed=signed), init_scale
    )


def time_ratio_deep_toy(
    depth: int, fusion_layer: int, rho: ArrayLike, ratio: ArrayLike, init_scale: ArrayLike
) -> Float[Array, ...]:
    """The authors' `sweep.lag_depth(L, L_f, rho, ratio, u0)` on the toy data (digest 2.6):
    `time_ratio_deep_from_drives` with `drives_toy(rho, ratio)`. Reproduces the digest's
    reference table (L = 4) to < 1e-3 (tests/test_theory.py)."""
    return time_ratio_deep_from_drives(depth, fusion_layer, drives_toy(rho, ratio), init_scale)


def phase_times_deep(
    stats_or_drives: Statistics | Drives,
    depth: int,
    fusion_layer: int,
    init_scale: ArrayLike,
    *,
    signed: bool | None = None,
) -> tuple[Float[Array, ...], Float[Array, ...]]:
    """Absolute leading-order (t_A, t_B) in units of tau (digest 2.6): t_A = tau I
    (`unimodal_integral`) and t_B = t_A x `time_ratio_deep` (so that the L_f = 1 and L_f = L
    special cases hold exactly: t_B = t_A for early fusion; for L_f = L the ratio is the two-layer
    one, which differs from the integral-based lag by a factor 1 / (1 - u0^{L-2})).

    For L_f = 1 the integral is the early-fusion escape of the joint rank-one mode
    (u_B = k_s u + (1 - k_s) u0 is then its B component), not a per-modality time.
    """
    L, Lf = _check_structure(depth, fusion_layer)
    d = (
        stats_or_drives
        if isinstance(stats_or_drives, Drives)
        else drives(stats_or_drives, signed=signed)
    )
    t_A = unimodal_integral(L, Lf, d.s_A, d.s_B, init_scale)
    return t_A, t_A * time_ratio_deep_from_drives(L, Lf, d, init_scale)


# ------------------------------------------------------------------------------------------------
# 2.4 Misattribution, 2.5 superficial modality preference
# ------------------------------------------------------------------------------------------------
def misattribution_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, ...]:
    """W_A^tot(t_uni) - W_A^tot(inf) = rho / ratio on the toy data (digest 2.4)."""
    return jnp.asarray(rho, dtype=float) / jnp.asarray(ratio, dtype=float)


def misattribution(stats: Statistics) -> Float[Array, "*batch o dA"]:
    """W_A^uni - W*_A = W*_B Sigma_BA Sigma_A^-1 (digest 2.4, general form): during the unimodal
    phase A absorbs the part of B's contribution that is correlated with A."""
    w_star = stats.optimal_weights()
    return stats.unimodal_weights("A") - w_star[..., : stats.d_A]


def prioritization_boundary(sigma_ratio: ArrayLike) -> Float[Array, ...]:
    """w_A* / w_B* = (sigma_A / sigma_B)^-2 (digest 2.5, solid line): for independent scalar
    modalities and positive teacher weights, A is learned first iff w_A* / w_B* lies above it
    (w_A* sigma_A^2 > w_B* sigma_B^2, i.e. Sigma_yxA > Sigma_yxB)."""
    return _f(check_positive("sigma_ratio (sigma_A / sigma_B)", sigma_ratio)) ** -2.0


def contribution_boundary(sigma_ratio: ArrayLike) -> Float[Array, ...]:
    """w_A* / w_B* = (sigma_A / sigma_B)^-1 (digest 2.5, dashed line): A contributes more to the
    output variance (and to the loss reduction) iff w_A* / w_B* lies above it."""
    return _f(check_positive("sigma_ratio (sigma_A / sigma_B)", sigma_ratio)) ** -1.0


def superficial_preference(weight_ratio: ArrayLike, sigma_ratio: ArrayLike) -> Bool[Array, ...]:
    """True where the modality learned first contributes *less* (digest 2.5, red region):
    the long plateau then sits at the higher of L(M_A), L(M_B).

    `weight_ratio` = w_A* / w_B* > 0, `sigma_ratio` = sigma_A / sigma_B, rho = 0. Example:
    sigma_A / sigma_B = 2, w* = (1.5, 4): A first, plateau L(M_A) / L(M_0) = 0.64.
    """
    w = _f(check_positive("weight_ratio (w_A* / w_B*)", weight_ratio))
    a_first = w > prioritization_boundary(sigma_ratio)
    a_more = w > contribution_boundary(sigma_ratio)
    return a_first != a_more


# ------------------------------------------------------------------------------------------------
# 2.8 Generalization and the overparametrized regime
# ------------------------------------------------------------------------------------------------
def min_norm_solution(sample_stats: Statistics) -> Float[Array, "*batch o d"]:
    """W = Sigma_yx Sigma^+ of the *sample* statistics: the minimum-norm least-squares solution.

    Early fusion from vanishing initialization converges to it exactly (digest 2.8, checked
    there to 0.015): every layer-1 update is a combination of training inputs, so W^tot stays in
    their span. In the underparametrized regime (n >= d, Sigma full rank) it is the unique OLS
    solution, which late fusion reaches as well.
    """
    return sample_stats.optimal_weights()


def generalization_error(
    w_tot: Float[ArrayLike, "*batch o d"], population: Statistics
) -> Float[Array, "*batch"]:
    """E_g = 1/2 (W - w*) Sigma (W - w*)^T on the population statistics (digest 2.8; label
    noise excluded, w* = population Sigma_yx Sigma^-1)."""
    return population.generalization_error(_f(w_tot))


def unimodal_generalization_error(
    sample_stats: Statistics, population: Statistics
) -> Float[Array, "*batch"]:
    """E_g at the sample unimodal fixed point M_A = (Sigma^_yxA Sigma^_A^+, 0) (digest 2.8):
    1/2 (W^_A^uni - w*_A, -w*_B) Sigma (.)^T. Population value 0.25 for the D = 100 setting.
    (The authors' "E_g^uni = 0.467" at P = 70 is the early-stopping minimum, not this value.)"""
    return population.generalization_error(fixed_point_weights(sample_stats, "A"))


def early_fusion_final_error(
    sample_stats: Statistics, population: Statistics
) -> Float[Array, "*batch"]:
    """E_g of the solution early fusion converges to from small initialization: the min-norm
    interpolant `min_norm_solution(sample_stats)` (exact in the u0 -> 0 limit; digest 2.8)."""
    return population.generalization_error(min_norm_solution(sample_stats))


def late_fusion_final_solution(
    sample_stats: Statistics,
    *,
    depth: int = 2,
    init_scale: float = 1e-9,
    direction: str = "drive",
    t_max: float | None = None,
    converge_rtol: float = 1e-10,
) -> Float[Array, "o d"]:
    """Numerical prediction of the interpolant late fusion converges to after a long unimodal
    phase (digest 2.8, 'permanent unimodal bias'). **No closed form**: this integrates the
    exact balanced rank-one dynamics (`reduced_flow`, fusion at L_f = L) from per-layer scale
    u0 to convergence and returns its final [W_A^tot, W_B^tot].

    Why numerical: in the overparametrized regime (n < d, but n > d_A, d_B) every branch's update
    spans its whole input space, and the two branches are preconditioned by their own norms
    (tau dW_m/dt = e_m (||W_m|| I + W_m^T W_m / ||W_m||) for L = 2), so W^tot leaves the span of
    the training inputs and the interpolant reached depends on the whole path; the simple
    "sequential" guess (A's unimodal solution, then a min-norm fit of the residual) is refuted
    by simulation (digest 2.8: ||W_B|| 1.11 predicted vs 0.80 simulated). `direction="drive"`
    starts each branch along its initial drive Sigma_yxm (the u0 -> 0 limit of a small random
    initialization, whose component along the drive outgrows the rest); "solution" starts along
    W* (the `aligned` network init). Compare with `min_norm_solution` (early fusion).
    """
    traj = reduced_flow(
        sample_stats,
        depth=depth,
        fusion_layer=depth,
        init_scale=init_scale,
        direction=direction,
        t_max=t_max,
        converge_rtol=converge_rtol,
    )
    return traj.weights[..., -1, :, :]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def swap_modalities(stats: Statistics) -> Statistics:
    """The same statistics with the roles of A and B exchanged (B's block first)."""
    dA = stats.d_A
    perm = np.concatenate([np.arange(dA, stats.d), np.arange(dA)])
    sxx = stats.sigma_xx[..., perm, :][..., :, perm]
    return Statistics(sxx, stats.sigma_yx[..., perm], stats.sigma_yy, d_A=stats.d_B)


def orient_first_learned(stats: Statistics) -> tuple[Statistics, Int[Array, "*batch"]]:
    """Relabel each member so that A is the modality learned first (`learned_first`), as every
    formula here assumes. Returns (statistics, swapped) with swapped = 1 where A and B were
    exchanged. Batched statistics need d_A = d_B (the swap must keep the shapes)."""
    first = learned_first(stats)
    if stats.d_A != stats.d_B:
        if stats.batch_shape:
            raise ValueError(
                f"orienting a batch needs d_A = d_B; got d_A = {stats.d_A}, d_B = {stats.d_B} "
                "(swap members individually with swap_modalities)."
            )
        return (swap_modalities(stats) if int(first) == 1 else stats), first
    swapped = swap_modalities(stats)
    pick = lambda a, b: jnp.where(  # noqa: E731
        first.reshape(first.shape + (1,) * (a.ndim - first.ndim)) == 1, b, a
    )
    return jax.tree.map(pick, stats, swapped), first
