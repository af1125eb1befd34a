"""Two-layer late fusion: learning times, phase times and the time ratio t_B / t_A.

Zhang et al. 2024, two-layer late-fusion time ratio (authors' code `sweep.lag_twolayer`);
docs/theory.md §2.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .. import _linalg
from .._statistics import Statistics
from .._validation import check_positive
from ._fixed_points import drives
from ._util import _check_u0, _f, _norm


def time_ratio_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, ...]:
    """t_B / t_A = 1 + (ratio^2 - 1) / (1 - rho^2) for two-layer late fusion on the toy data
    (Zhang et al. 2024, toy time ratio; docs/theory.md §2; ratio = sigma_A / sigma_B, teacher
    w = (1, 1)). Early fusion: 1."""
    rho, ratio = jnp.asarray(rho, dtype=float), jnp.asarray(ratio, dtype=float)
    return 1.0 + (ratio**2 - 1.0) / (1.0 - rho**2)


def time_ratio_two_layer(
    stats: Statistics, *, signed: bool | None = None
) -> Float[Array, "*batch"]:
    """Two-layer late fusion, general statistics (Zhang et al. 2024; authors' `sweep.lag_twolayer`;
    docs/theory.md §2):

        t_B / t_A = 1 + (||Sigma_yxA|| - ||Sigma_yxB||) / ||Sigma_yxB - W_A^uni Sigma_AB||.

    Derivation (docs/theory.md §2): A escapes at rate s_A, t_A = ln(1/u0) / s_A; meanwhile
    ln ||W_B|| grows at rate s_B; after t_A B's drive is g_B, so
    t_B = t_A + (ln(1/u0) - s_B t_A) / g_B. Leading order: independent of u0.

    For scalar modalities and output the signed form (docs/theory.md §2 "sign convention") is
    used by default, 1 + (s_A - s_B) / g_B with s_B = Sigma_yxB sign(W*_B): the toy closed form,
    correct also when Sigma_yxB < 0.

    For vector modalities the norm form is the u0 -> 0 limit but converges slowly: B's branch
    grows along Sigma_yxB during phase 1 and must rotate towards g_B afterwards. For a rank-one
    branch this adds ln(2 / (1 + cos theta)) / g_B to t_B - t_A, theta the angle between
    Sigma_yxB and Sigma_yxB - W_A^uni Sigma_AB (the exact solution of the phase-2 rotation,
    docs/theory.md §2), which is O(1) against (1 - k_s) ln(1/u0) / g_B: small for aligned
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
    10-20 % below the gradient-flow formula; docs/theory.md §2 "GD correction").

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
    """t_A ~ ln(1/u0) / ||Sigma_yxA|| (gradient-flow time, tau = 1; docs/theory.md §2), with u0
    the per-layer scale (W_A^tot(0) ~ u0^2). Leading order: O(1) / s_A corrections are dropped."""
    u0 = jnp.asarray(init_scale, dtype=float)
    return jnp.log(1.0 / u0) / jnp.linalg.norm(stats.sigma_yxA, axis=(-2, -1))


def phase_times_two_layer(
    stats: Statistics, init_scale: ArrayLike, *, order: int = 0, signed: bool | None = None
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """(t_A, t_B) for two-layer late fusion started at per-layer scale u0 (docs/theory.md §2),
    tau = 1.

    `order=0` (leading order, Zhang et al. 2024; docs/theory.md §2): with l = ln(1/u0),

        t_A = l / s_A,    t_B = t_A + (l - s_B t_A) / g_B.

    `order=1` adds the O(1) terms for balanced aligned initialization (W_m(0) = u0^2), derived
    here (beyond the paper) for scalar modalities; the exact `multimodal_dln.reduced_flow`
    agrees in t_B/t_A to < 1.5e-3 at u0 = 1e-4 and < 3e-4 at u0 <= 1e-12, where the leading
    order is off by up to 1.5 % (tests/test_reduced_dynamics.py; docs/reproduction.md,
    `init-convergence`; docs/theory.md §2 "first-order terms"):

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
    return _phase_times_first_order(stats, d, ell)


def _phase_times_first_order(stats: Statistics, d, ell):
    """`phase_times_two_layer(..., order=1)`: the O(1)-corrected (t_A, t_B) given the drives `d`
    and l = ln(1/u0) (docs/theory.md §2 "first-order terms")."""
    w_star = stats.optimal_weights()
    w_star_A, w_star_B = w_star[..., : stats.d_A], w_star[..., stats.d_A :]
    w_uni_vec = stats.unimodal_weights("A")
    log_w0 = -2.0 * ell
    t_A = (jnp.log(jnp.expm1(jnp.log(d.w_uni) - log_w0))) / (2.0 * d.s_A)
    t_star = (jnp.log(d.w_uni) - log_w0) / (2.0 * d.s_A)
    t_B = t_star + (ell + 0.5 * jnp.log(_norm(w_star_B)) - d.s_B * t_star) / d.g_B
    sA = stats.sigma_A
    c2 = _norm(_linalg.pinv(sA) @ stats.sigma_AB) ** 2
    schur = (
        stats.sigma_B - jnp.swapaxes(stats.sigma_AB, -1, -2) @ _linalg.pinv(sA) @ stats.sigma_AB
    )
    schur = jnp.linalg.norm(schur, ord=2, axis=(-2, -1)) if stats.d_B > 1 else schur[..., 0, 0]
    slow = c2 / (2.0 * schur * _norm(w_star_A)) * jnp.log(_norm(w_uni_vec + w_star_A) / d.w_uni)
    return t_A, t_B + slow
