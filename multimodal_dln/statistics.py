"""Second-order data statistics: everything a linear network's MSE dynamics depends on.

For a linear map y_hat = W x (no biases, inputs with zero mean) the loss

    L(W) = 1/2 E||y - W x||^2 = 1/2 (tr Sigma_yy - 2 tr(W Sigma_yx^T) + tr(W Sigma_xx W^T))

and its gradient dL/dW = -(Sigma_yx - W Sigma_xx) depend on the data only through the second
moments (Zhang et al. 2024, Sec. 2; digest 1.3). `Statistics` holds them, with x = [x_A; x_B]
split into the two modality blocks

    Sigma_xx = [[Sigma_A, Sigma_AB], [Sigma_BA, Sigma_B]],   Sigma_yx = [Sigma_yxA, Sigma_yxB].

A `Statistics` is a pytree of arrays (the modality split `d_A` is static), so `jax.vmap` over the
constructors gives a batch of statistics with a leading axis on every array.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._validation import (
    check_finite,
    check_open_interval,
    check_positive,
    check_positive_definite,
)

__all__ = ["Statistics", "validate_statistics"]


def _pinv_psd(m: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    """Moore-Penrose pseudo-inverse of a symmetric PSD matrix (plain inverse when full rank)."""
    return jnp.linalg.pinv(m, hermitian=True)


class Statistics(eqx.Module):
    """Population (or empirical) second moments of a two-modality regression problem.

    **Fields:**

    - `sigma_xx`: `(d, d)` input second moment E[x x^T], d = d_A + d_B, A block first.
    - `sigma_yx`: `(o, d)` input-output second moment E[y x^T].
    - `sigma_yy`: `(o, o)` output second moment E[y y^T] (label noise included), so the loss value
      is exact, not only its gradient.
    - `d_A`: size of modality A (static); modality B is the remaining `d - d_A` coordinates.

    Construct with `Statistics.toy`, `Statistics.random`, `Statistics.from_samples`, or directly.
    Array fields may carry leading batch axes (e.g. after `jax.vmap(Statistics.toy)`).
    """

    sigma_xx: Float[Array, "*batch d d"]
    sigma_yx: Float[Array, "*batch o d"]
    sigma_yy: Float[Array, "*batch o o"]
    d_A: int = eqx.field(static=True)

    def __check_init__(self):
        sxx, syx, syy = (jnp.shape(a) for a in (self.sigma_xx, self.sigma_yx, self.sigma_yy))
        if len(sxx) < 2 or sxx[-1] != sxx[-2]:
            raise ValueError(f"sigma_xx must be a square (d, d) matrix; got shape {sxx}.")
        d = sxx[-1]
        if len(syx) < 2 or syx[-1] != d:
            raise ValueError(
                f"sigma_yx must have shape (o, d) with d = {d} (the size of sigma_xx); got {syx}."
            )
        o = syx[-2]
        if len(syy) < 2 or syy[-2:] != (o, o):
            raise ValueError(f"sigma_yy must have shape (o, o) with o = {o}; got {syy}.")
        if not (isinstance(self.d_A, int) and 1 <= self.d_A <= d - 1):
            raise ValueError(
                f"d_A (size of modality A) must be an integer in [1, {d - 1}] for input size "
                f"d = {d}; got {self.d_A!r}."
            )

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def d(self) -> int:
        return self.sigma_xx.shape[-1]

    @property
    def d_B(self) -> int:
        return self.d - self.d_A

    @property
    def d_out(self) -> int:
        return self.sigma_yx.shape[-2]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.sigma_xx.shape[:-2]

    # ---- modality blocks ----------------------------------------------------------------------
    @property
    def sigma_A(self) -> Float[Array, "*batch dA dA"]:
        return self.sigma_xx[..., : self.d_A, : self.d_A]

    @property
    def sigma_B(self) -> Float[Array, "*batch dB dB"]:
        return self.sigma_xx[..., self.d_A :, self.d_A :]

    @property
    def sigma_AB(self) -> Float[Array, "*batch dA dB"]:
        return self.sigma_xx[..., : self.d_A, self.d_A :]

    @property
    def sigma_yxA(self) -> Float[Array, "*batch o dA"]:
        return self.sigma_yx[..., : self.d_A]

    @property
    def sigma_yxB(self) -> Float[Array, "*batch o dB"]:
        return self.sigma_yx[..., self.d_A :]

    # ---- derived quantities (digest 2.1) --------------------------------------------------------
    def loss(self, w_tot: Float[Array, "*batch o d"]) -> Float[Array, "*batch"]:
        """L(W) = 1/2 (tr Sigma_yy - 2 tr(W Sigma_yx^T) + tr(W Sigma_xx W^T)) (digest 1.3)."""
        t_yy = jnp.trace(self.sigma_yy, axis1=-2, axis2=-1)
        t_yx = jnp.sum(w_tot * self.sigma_yx, axis=(-2, -1))
        t_xx = jnp.sum((w_tot @ self.sigma_xx) * w_tot, axis=(-2, -1))
        return 0.5 * (t_yy - 2.0 * t_yx + t_xx)

    def optimal_weights(self) -> Float[Array, "*batch o d"]:
        """W* = Sigma_yx Sigma_xx^+ (the minimum-norm least-squares solution; M_* in digest 2.1)."""
        return self.sigma_yx @ _pinv_psd(self.sigma_xx)

    def min_loss(self) -> Float[Array, "*batch"]:
        """L(M_*) = 1/2 (tr Sigma_yy - tr(Sigma_yx Sigma_xx^+ Sigma_yx^T))."""
        return self.loss(self.optimal_weights())

    def unimodal_weights(self, modality: str = "A") -> Float[Array, "*batch o dm"]:
        """W_m^uni = Sigma_yxm Sigma_m^+: the best predictor from modality m alone (M_A / M_B)."""
        if modality == "A":
            return self.sigma_yxA @ _pinv_psd(self.sigma_A)
        if modality == "B":
            return self.sigma_yxB @ _pinv_psd(self.sigma_B)
        raise ValueError(f"modality must be 'A' or 'B'; got {modality!r}.")

    def concat(self, w_A: Float[Array, "*batch o dA"], w_B: Float[Array, "*batch o dB"]):
        return jnp.concatenate([w_A, w_B], axis=-1)

    def generalization_error(self, w_tot: Float[Array, "*batch o d"]) -> Float[Array, "*batch"]:
        """E_g = 1/2 tr((W - W*) Sigma_xx (W - W*)^T) with W* = `optimal_weights()` (digest 2.8).

        Call it on the *population* statistics to measure generalization; label noise is excluded.
        """
        diff = w_tot - self.optimal_weights()
        return 0.5 * jnp.sum((diff @ self.sigma_xx) * diff, axis=(-2, -1))

    # ---- constructors -----------------------------------------------------------------------
    @classmethod
    def toy(
        cls,
        rho: ArrayLike,
        ratio: ArrayLike,
        noise: ArrayLike = 0.0,
        *,
        w_A: ArrayLike = 1.0,
        w_B: ArrayLike = 1.0,
    ) -> Statistics:
        """The paper's toy data (digest 1.1): scalar modalities with

            Var(x_A) = ratio^2, Var(x_B) = 1, Corr(x_A, x_B) = rho,  y = w_A x_A + w_B x_B + noise,

        noise ~ N(0, noise^2). With ratio > 1 (and the default teacher w = (1, 1)) A is the
        stronger modality, learned first. All arguments may be traced (vmap over them).
        """
        rho = check_open_interval("rho", rho, -1.0, 1.0)
        ratio = check_positive("ratio", ratio)
        noise = check_positive("noise", noise, allow_zero=True)
        rho, ratio, noise, w_A, w_B = (jnp.asarray(v, dtype=float) for v in (rho, ratio, noise, w_A, w_B))
        c = rho * ratio
        sigma_xx = jnp.stack([jnp.stack([ratio**2, c]), jnp.stack([c, jnp.ones_like(c)])])
        w = jnp.stack([w_A, w_B])[None, :]
        sigma_yx = w @ sigma_xx
        sigma_yy = w @ sigma_xx @ w.T + noise**2
        return cls(sigma_xx, sigma_yx, sigma_yy, d_A=1)

    @classmethod
    def random(
        cls,
        key: PRNGKeyArray,
        d_A: int,
        d_B: int,
        d_out: int = 1,
        *,
        scale_A: ArrayLike = 2.0,
        scale_B: ArrayLike = 1.0,
        df: int | None = None,
        noise: ArrayLike = 0.0,
    ) -> Statistics:
        """Random statistics as in the paper's random-covariance experiment (digest 1.1 'rand_sweep').

        Sigma_xx ~ InvWishart(df, Psi) with Psi = diag(scale_A I_{d_A}, scale_B I_{d_B}) and
        df = d + 2 by default (so E[Sigma_xx] = Psi); teacher W* ~ Uniform(-1, 1)^{o x d};
        y = W* x + noise, noise ~ N(0, noise^2 I).
        """
        for name, v in (("d_A", d_A), ("d_B", d_B), ("d_out", d_out)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v!r}.")
        d = d_A + d_B
        df = d + 2 if df is None else df
        if not isinstance(df, int) or df <= d - 1:
            raise ValueError(f"df (inverse-Wishart degrees of freedom) must be an integer > d - 1 = {d - 1}; got {df!r}.")
        scale_A = check_positive("scale_A", scale_A)
        scale_B = check_positive("scale_B", scale_B)
        noise = check_positive("noise", noise, allow_zero=True)
        k_w, k_t = jax.random.split(key)
        psi_diag = jnp.concatenate(
            [jnp.full((d_A,), scale_A, dtype=float), jnp.full((d_B,), scale_B, dtype=float)]
        )
        # Sigma^-1 ~ Wishart(df, Psi^-1): a sum of df outer products of N(0, Psi^-1) vectors.
        g = jax.random.normal(k_w, (df, d)) / jnp.sqrt(psi_diag)
        precision = g.T @ g
        sigma_xx = jnp.linalg.inv(precision)
        sigma_xx = 0.5 * (sigma_xx + sigma_xx.T)
        w_star = jax.random.uniform(k_t, (d_out, d), minval=-1.0, maxval=1.0)
        sigma_yx = w_star @ sigma_xx
        sigma_yy = w_star @ sigma_xx @ w_star.T + noise**2 * jnp.eye(d_out)
        return cls(sigma_xx, sigma_yx, sigma_yy, d_A=d_A)

    @classmethod
    def from_samples(
        cls,
        x_A: Float[ArrayLike, "n dA"],
        x_B: Float[ArrayLike, "n dB"],
        y: Float[ArrayLike, "n o"] | Float[ArrayLike, " n"],
    ) -> Statistics:
        """Empirical second moments (1/n) sum_i of a finite data set (no centring: the networks
        have no biases, so these are exactly what full-batch MSE training sees)."""
        x_A, x_B, y = (jnp.asarray(a, dtype=float) for a in (x_A, x_B, y))
        if x_A.ndim == 1:
            x_A = x_A[:, None]
        if x_B.ndim == 1:
            x_B = x_B[:, None]
        if y.ndim == 1:
            y = y[:, None]
        n = x_A.shape[0]
        if x_B.shape[0] != n or y.shape[0] != n:
            raise ValueError(
                f"x_A, x_B and y must have the same number of samples; got {x_A.shape[0]}, "
                f"{x_B.shape[0]}, {y.shape[0]}."
            )
        for name, a in (("x_A", x_A), ("x_B", x_B), ("y", y)):
            check_finite(name, a)
        x = jnp.concatenate([x_A, x_B], axis=1)
        return cls(x.T @ x / n, y.T @ x / n, y.T @ y / n, d_A=x_A.shape[1])


def validate_statistics(stats: Statistics, *, require_full_rank: bool = False) -> Statistics:
    """Check values: finite, Sigma_xx symmetric PSD (PD if `require_full_rank`), and
    Sigma_yy - Sigma_yx Sigma_xx^+ Sigma_yx^T PSD (the statistics of *some* joint distribution).

    Checked eagerly for concrete arrays, at run time (``eqx.error_if``) for traced ones.
    """
    sxx = check_finite("sigma_xx", stats.sigma_xx)
    syx = check_finite("sigma_yx", stats.sigma_yx)
    syy = check_finite("sigma_yy", stats.sigma_yy)
    sxx = check_positive_definite("sigma_xx (input covariance)", sxx, semi=not require_full_rank)
    stats = Statistics(sxx, syx, syy, d_A=stats.d_A)
    resid = stats.sigma_yy - stats.optimal_weights() @ jnp.swapaxes(stats.sigma_yx, -1, -2)
    resid = resid + 1e-9 * (jnp.abs(stats.sigma_yy).max() + 1.0) * jnp.eye(stats.d_out)
    syy = check_positive_definite(
        "sigma_yy - sigma_yx sigma_xx^+ sigma_yx^T (label-noise covariance)",
        resid,
        semi=True,
        attach_to=stats.sigma_yy,
    )
    return Statistics(stats.sigma_xx, stats.sigma_yx, syy, d_A=stats.d_A)
