"""Weight decay: final solutions, the late-fusion threshold and the phase times (beyond the
paper; docs/theory.md §8).

With L2 strength lambda on every layer (J = L + lambda/2 sum_l ||W_l||^2) a balanced two-layer
branch pays lambda |W| for its product W (lambda/2 (w^2 + v^2) >= lambda |w v|, with equality
when balanced, and weight decay makes every start balanced: d/dt (w^2 - v^2) = -2 lambda
(w^2 - v^2)). So two-layer late fusion with scalar modalities ends at the lasso
min_W L(W) + lambda (|W_A| + |W_B|), early fusion (one shared first layer) at the group lasso
min_W L(W) + lambda ||W||, and a one-layer network at ridge regression. Near a small start a
branch's per-layer scale grows at its drive minus lambda, which gives the phase times.

Late-fusion formulas need scalar modalities and output and use the signed drives of
`drives` (docs/theory.md §2, "sign convention"); with c = Sigma_AB / Sigma_A and
kappa = sign(g_B) sign(Sigma_yxA) c:

    lambda_c = |g_B| / (1 - kappa),     t_B / t_A = 1 + (s_A - s_B) / (|g_B| - lambda (1 - kappa)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._loss import regularized_minimum
from .._statistics import Statistics
from .._validation import check_open_interval, check_positive, check_structure
from ._fixed_points import drives
from ._util import _check_u0, _f, _is_scalar, _sign

__all__ = [
    "phase_times_weight_decay",
    "time_ratio_weight_decay",
    "time_ratio_weight_decay_toy",
    "weight_decay_solution",
    "weight_decay_solution_toy",
    "weight_decay_threshold",
    "weight_decay_threshold_toy",
]


def _lam(weight_decay) -> Array:
    return _f(check_positive("weight_decay", weight_decay, allow_zero=True))


def _require_scalar(stats: Statistics, what: str) -> None:
    if not _is_scalar(stats):
        raise ValueError(
            f"{what} needs scalar modalities and output (d_A = d_B = d_out = 1); got "
            f"(d_A, d_B, d_out) = ({stats.d_A}, {stats.d_B}, {stats.d_out})."
        )


def weight_decay_solution(
    stats: Statistics, weight_decay: ArrayLike, *, depth: int = 2, fusion_layer: int = 2
) -> Float[Array, "*batch o d"]:
    """The final weights [W_A^tot, W_B^tot] of a network trained with weight decay lambda from a
    small start (docs/theory.md §8): the minimizer of L(W) + lambda R(W) with R the penalty the
    structure induces on W^tot at a balanced minimum:

    - two-layer late fusion (scalar modalities): lambda (|W_A| + |W_B|), a lasso; W_B = 0 for
      lambda >= `weight_decay_threshold` (a permanent unimodal solution);
    - two-layer early fusion (d_out = 1): lambda ||W||, a group lasso:
      W = Sigma_yx (Sigma + mu I)^-1 with mu ||W|| = lambda, both modalities nonzero while
      lambda < ||Sigma_yx||, 0 beyond;
    - depth 1: ridge, Sigma_yx (Sigma + lambda I)^-1.

    Batched statistics and `weight_decay` broadcast against each other. Other structures raise.
    """
    check_structure(depth, fusion_layer)
    lam = _lam(weight_decay)
    shape = jnp.broadcast_shapes(stats.batch_shape, lam.shape)
    flat = jax.tree.map(
        lambda a: jnp.broadcast_to(a, shape + a.shape[-2:]).reshape((-1,) + a.shape[-2:]), stats
    )

    def one(s, lam_one):
        return regularized_minimum(s, lam_one, depth, fusion_layer)[0]

    w = jax.vmap(one)(flat, jnp.broadcast_to(lam, shape).reshape(-1))
    return w.reshape(shape + w.shape[-2:])


def weight_decay_solution_toy(
    rho: ArrayLike, ratio: ArrayLike, weight_decay: ArrayLike
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """(W_A, W_B) of two-layer late fusion on the toy data (teacher (1, 1)) with weight decay
    lambda, in closed form (the lasso of `weight_decay_solution`; docs/theory.md §8), for
    ratio > 1 (A learned first):

    - lambda < lambda_c: W_A = 1 - lambda (1 - rho r) / (r^2 (1 - rho^2)),
      W_B = 1 - lambda / lambda_c, lambda_c = r (1 - rho^2) / (r - rho);
    - lambda_c <= lambda < r^2 + rho r: W_A = 1 + rho / r - lambda / r^2, W_B = 0;
    - beyond: 0, 0.
    """
    rho = _f(check_open_interval("rho", rho, -1.0, 1.0))
    r = _f(check_positive("ratio", ratio))
    lam = _lam(weight_decay)
    lam_c = weight_decay_threshold_toy(rho, r)
    both = lam < lam_c
    alive = lam < r**2 + rho * r
    w_A = jnp.where(
        both, 1.0 - lam * (1.0 - rho * r) / (r**2 * (1.0 - rho**2)), 1.0 + rho / r - lam / r**2
    )
    return jnp.where(alive, w_A, 0.0), jnp.where(both, 1.0 - lam / lam_c, 0.0)


def weight_decay_threshold(stats: Statistics) -> Float[Array, "*batch"]:
    """lambda_c: the weight decay above which two-layer late fusion never learns modality B
    (docs/theory.md §8). On the unimodal plateau A sits at its regularized value
    sign(Sigma_yxA) (|Sigma_yxA| - lambda) / Sigma_A, so B's drive there is g_B + lambda kappa
    (signed along W*_B); B's branch grows while that exceeds lambda:

        lambda_c = |g_B| / (1 - kappa),   kappa = sign(g_B) sign(Sigma_yxA) Sigma_AB / Sigma_A,

    valid for kappa < 1 and lambda_c < |Sigma_yxA| (A still learned); NaN otherwise (no
    lambda then leaves A learned and B not). Scalar modalities and output."""
    _require_scalar(stats, "weight_decay_threshold")
    d = drives(stats, signed=True)
    kappa = _kappa(stats)
    lam_c = d.g_B / jnp.where(kappa < 1.0, 1.0 - kappa, 1.0)
    return jnp.where((kappa < 1.0) & (lam_c < d.s_A), lam_c, jnp.nan)


def _kappa(stats: Statistics):
    """kappa = sign(g_B) sign(Sigma_yxA) Sigma_AB / Sigma_A (scalar modalities)."""
    w_uni = stats.unimodal_weights("A")
    g = (stats.sigma_yxB - w_uni @ stats.sigma_AB)[..., 0, 0]
    c = stats.sigma_AB[..., 0, 0] / stats.sigma_A[..., 0, 0]
    return _sign(g) * _sign(stats.sigma_yxA[..., 0, 0]) * c


def weight_decay_threshold_toy(rho: ArrayLike, ratio: ArrayLike) -> Float[Array, "*batch"]:
    """lambda_c = r (1 - rho^2) / (r - rho) on the toy data (g_B = 1 - rho^2, kappa = rho / r;
    docs/theory.md §8): 1 at rho = 0, 1 at (r, rho) = (2, 0.5), 0.6 at (2, -0.5). For r > 1."""
    rho = _f(check_open_interval("rho", rho, -1.0, 1.0))
    r = _f(check_positive("ratio", ratio))
    return r * (1.0 - rho**2) / (r - rho)


def phase_times_weight_decay(
    stats: Statistics, init_scale: ArrayLike, weight_decay: ArrayLike, *, fusion_layer: int = 2
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """(t_A, t_B) of a two-layer network with weight decay lambda from per-layer scale u0, to
    leading order in l = ln(1/u0) (docs/theory.md §8; tau = 1). Each branch's per-layer scale
    grows at its drive minus lambda:

    - late fusion (`fusion_layer=2`, scalar modalities, signed drives):
      t_A = l / (s_A - lambda),
      t_B = t_A + (l - (s_B - lambda) t_A) / (|g_B| - lambda (1 - kappa));
    - early fusion (`fusion_layer=1`): t_A = t_B = l / (||Sigma_yx|| - lambda).

    A time is inf where that modality is never learned (lambda >= s_A, lambda >= lambda_c,
    lambda >= ||Sigma_yx||). lambda = 0 gives `phase_times_two_layer`."""
    check_structure(2, fusion_layer)
    ell = jnp.log(1.0 / _f(_check_u0(init_scale)))
    lam = _lam(weight_decay)
    if fusion_layer == 1:
        rate = jnp.linalg.norm(stats.sigma_yx, axis=(-2, -1)) - lam
        t = jnp.where(rate > 0, ell / jnp.where(rate > 0, rate, 1.0), jnp.inf)
        return t, t
    _require_scalar(stats, "phase_times_weight_decay (late fusion)")
    d = drives(stats, signed=True)
    rate_A = d.s_A - lam
    rate_B = d.g_B - lam * (1.0 - _kappa(stats))
    t_A = jnp.where(rate_A > 0, ell / jnp.where(rate_A > 0, rate_A, 1.0), jnp.inf)
    lag = (ell - (d.s_B - lam) * t_A) / jnp.where(rate_B > 0, rate_B, 1.0)
    return t_A, jnp.where((rate_B > 0) & (rate_A > 0), t_A + lag, jnp.inf)


def time_ratio_weight_decay(
    stats: Statistics, weight_decay: ArrayLike
) -> Float[Array, "*batch"]:
    """t_B / t_A of two-layer late fusion with weight decay lambda, leading order
    (docs/theory.md §8; scalar modalities, signed drives):

        t_B / t_A = 1 + (s_A - s_B) / (|g_B| - lambda (1 - kappa)),

    longer than without weight decay and diverging at lambda_c (`weight_decay_threshold`);
    inf for lambda >= lambda_c (B never learned). u0 drops out as at lambda = 0."""
    _require_scalar(stats, "time_ratio_weight_decay")
    d = drives(stats, signed=True)
    rate_B = d.g_B - _lam(weight_decay) * (1.0 - _kappa(stats))
    lag = (d.s_A - d.s_B) / jnp.where(rate_B > 0, rate_B, 1.0)
    return jnp.where(rate_B > 0, 1.0 + lag, jnp.inf)


def time_ratio_weight_decay_toy(
    rho: ArrayLike, ratio: ArrayLike, weight_decay: ArrayLike
) -> Float[Array, "*batch"]:
    """t_B / t_A = 1 + (r^2 - 1) / (1 - rho^2 - lambda (1 - rho / r)) on the toy data
    (docs/theory.md §8): 4.333 at (r, rho, lambda) = (2, 0, 0.1), 7 at (2, 0, 0.5); inf for
    lambda >= lambda_c."""
    rho = _f(check_open_interval("rho", rho, -1.0, 1.0))
    r = _f(check_positive("ratio", ratio))
    rate_B = 1.0 - rho**2 - _lam(weight_decay) * (1.0 - rho / r)
    return jnp.where(rate_B > 0, 1.0 + (r**2 - 1.0) / jnp.where(rate_B > 0, rate_B, 1.0), jnp.inf)
