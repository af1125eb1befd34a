"""Second-order data statistics: everything a linear network's MSE dynamics depends on.

For a linear map y_hat = W x (no biases, inputs with zero mean) the loss

    L(W) = 1/2 E||y - W x||^2 = 1/2 (tr Sigma_yy - 2 tr(W Sigma_yx^T) + tr(W Sigma_xx W^T))

and its gradient dL/dW = -(Sigma_yx - W Sigma_xx) depend on the data only through the second
moments (Zhang et al. 2024; docs/theory.md §1). `Statistics` holds them, with x = [x_A; x_B]
split into the two modality blocks

    Sigma_xx = [[Sigma_A, Sigma_AB], [Sigma_BA, Sigma_B]],   Sigma_yx = [Sigma_yxA, Sigma_yxB].

A `Statistics` is a pytree of arrays (the modality split `d_A` is static), so `jax.vmap` over the
constructors gives a batch of statistics with a leading axis on every array. Bad values raise a
one-line `ValueError` when concrete; traced (inside `jit`/`vmap`), a member built from bad values
comes out all-NaN and `statistics_valid` flags it, so one bad member does not fail a batch.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from . import _linalg
from ._toy_statistics import modal_args, modal_moments, toy_args, toy_moments, toy_overflow
from ._validation import (
    _show,
    as_int,
    check_finite,
    check_finite_members,
    check_positive,
    check_positive_int,
    check_sample_counts,
    check_scalar,
    require_real,
)

__all__ = ["Statistics", "require_two_modalities"]


def _pinv_psd(m: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    """Moore-Penrose pseudo-inverse of a symmetric PSD matrix (plain inverse when full rank)."""
    return _linalg.pinv_hermitian(m)


class Statistics(eqx.Module):
    """Population (or empirical) second moments of a two-modality regression problem.

    **Fields:**

    - `sigma_xx`: `(d, d)` input second moment E[x x^T], d = d_A + d_B, A block first.
    - `sigma_yx`: `(o, d)` input-output second moment E[y x^T].
    - `sigma_yy`: `(o, o)` output second moment E[y y^T] (label noise included), so the loss value
      is exact, not only its gradient.
    - `d_A`: size of modality A (static); modality B is the remaining `d - d_A` coordinates.
    - `dims`: for M >= 2 modalities (docs/theory.md §11), their sizes (d_1, ..., d_M) in the
      order of the blocks (static; d_1 = `d_A`); None means two modalities, A and B.

    Construct with `Statistics.toy`, `Statistics.random`, `Statistics.from_samples`, or directly.
    Array fields may carry leading batch axes (e.g. after `jax.vmap(Statistics.toy)`).
    """

    sigma_xx: Float[Array, "*batch d d"]
    sigma_yx: Float[Array, "*batch o d"]
    sigma_yy: Float[Array, "*batch o o"]
    d_A: int = eqx.field(static=True)
    dims: tuple[int, ...] | None = eqx.field(static=True, default=None)

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
        if self.dims is not None:
            dims = self.dims
            ok = isinstance(dims, tuple) and len(dims) >= 2
            if not (ok and all(isinstance(k, int) and k >= 1 for k in dims)):
                raise ValueError(
                    f"dims must be a tuple of M >= 2 positive integers; got {dims!r}."
                )
            if sum(dims) != d or dims[0] != self.d_A:
                raise ValueError(
                    f"dims {dims} must add up to the input size d = {d} and start with "
                    f"d_A = {self.d_A}."
                )

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def d(self) -> int:
        return self.sigma_xx.shape[-1]

    @property
    def d_B(self) -> int:
        return self.d - self.d_A

    @property
    def modality_dims(self) -> tuple[int, ...]:
        """(d_1, ..., d_M): the modalities' sizes ((d_A, d_B) for two modalities)."""
        return (self.d_A, self.d_B) if self.dims is None else self.dims

    @property
    def n_modalities(self) -> int:
        return len(self.modality_dims)

    @property
    def modality_slices(self) -> tuple[slice, ...]:
        """Modality m's coordinates of x, as a slice per modality."""
        ends = np.cumsum((0,) + self.modality_dims)
        return tuple(slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:]))

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

    # ---- derived quantities (docs/theory.md §2) ------------------------------------------------
    def loss(self, w_tot: Float[Array, "*batch o d"]) -> Float[Array, "*batch"]:
        """L(W) = 1/2 (tr Sigma_yy - 2 tr(W Sigma_yx^T) + tr(W Sigma_xx W^T)) (docs/theory.md
        §1)."""
        t_yy = jnp.trace(self.sigma_yy, axis1=-2, axis2=-1)
        t_yx = jnp.sum(w_tot * self.sigma_yx, axis=(-2, -1))
        t_xx = jnp.sum((w_tot @ self.sigma_xx) * w_tot, axis=(-2, -1))
        return 0.5 * (t_yy - 2.0 * t_yx + t_xx)

    def optimal_weights(self) -> Float[Array, "*batch o d"]:
        """W* = Sigma_yx Sigma_xx^+ (the minimum-norm least-squares solution; the fixed point M_* of
        Zhang et al. 2024, docs/theory.md §2)."""
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

    def generalization_error(self, w_tot: Float[Array, "*batch o d"]) -> Float[Array, "*batch"]:
        """E_g = 1/2 tr((W - W*) Sigma_xx (W - W*)^T) with W* = `optimal_weights()` (Zhang et
        al. 2024; docs/theory.md §5).

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
        """The paper's toy data (Zhang et al. 2024; docs/theory.md §1): scalar modalities with

            Var(x_A) = ratio^2, Var(x_B) = 1, Corr(x_A, x_B) = rho,  y = w_A x_A + w_B x_B + noise,

        noise ~ N(0, noise^2). With ratio > 1 (and the default teacher w = (1, 1)) A is the
        stronger modality, learned first. All arguments may be traced (vmap over them), or
        arrays broadcasting to one batch shape `(n,)`, which gives a batch of n statistics.
        """
        args = toy_args(rho, ratio, noise, w_A, w_B)
        sigma_xx, sigma_yx, signal, noise_var = toy_moments(*args)
        sigma_yy = signal + noise_var[..., None, None]  # added outside: bit for bit as before
        moments = check_finite_members(
            (sigma_xx, sigma_yx, sigma_yy), lambda bad: toy_overflow(args, bad)
        )
        return cls(*moments, d_A=1)

    @classmethod
    def toy_modalities(
        cls,
        scales: ArrayLike,
        correlations: ArrayLike,
        teacher: ArrayLike | None = None,
        noise: ArrayLike = 0.0,
    ) -> Statistics:
        """Toy data with M >= 2 scalar modalities (docs/theory.md §11): x ~ N(0, D R D) with
        D = diag(scales) (standard deviations) and R the correlation matrix (unit diagonal,
        symmetric, positive semi-definite), y = teacher . x + noise, noise ~ N(0, noise^2);
        teacher defaults to all ones. `scales` (M,), `correlations` (M, M) and `teacher` (M,)
        may be traced (vmap over them). M = 2 with scales (ratio, 1) and correlation rho is
        `Statistics.toy(rho, ratio)` (as two-modality statistics, `dims` None).
        """
        args = modal_args(scales, correlations, teacher, noise)
        sigma_xx, sigma_yx, signal, noise_var = modal_moments(*args)
        moments = check_finite_members(
            (sigma_xx, sigma_yx, signal + noise_var[..., None, None]),
            "scales, teacher and noise give non-finite statistics (overflow); lower them.",
        )
        m = args[0].shape[-1]
        return cls(*moments, d_A=1, dims=None if m == 2 else (1,) * m)

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
        """Random statistics as in the paper's random-covariance experiment (the authors'
        `rand_sweep`; docs/theory.md §1).

        Sigma_xx ~ InvWishart(df, Psi) with Psi = diag(scale_A I_{d_A}, scale_B I_{d_B}) and
        df = d + 2 by default (so E[Sigma_xx] = Psi); teacher W* ~ Uniform(-1, 1)^{o x d};
        y = W* x + noise, noise ~ N(0, noise^2 I). One member: vmap over keys (and scales) for
        a batch.
        """
        d_A, d_B, d_out = map(check_positive_int, ("d_A", "d_B", "d_out"), (d_A, d_B, d_out))
        d = d_A + d_B
        df_int = d + 2 if df is None else as_int(df)
        if df_int is None or df_int <= d - 1:
            raise ValueError(
                f"df (inverse-Wishart degrees of freedom) must be an integer > d - 1 = {d - 1}; "
                f"got {_show(df)}."
            )
        scale_A = check_scalar("scale_A", check_positive("scale_A", scale_A))
        scale_B = check_scalar("scale_B", check_positive("scale_B", scale_B))
        noise = check_scalar("noise", check_positive("noise", noise, allow_zero=True))
        k_w, k_t = jax.random.split(key)
        psi_diag = jnp.concatenate(
            [jnp.full((d_A,), scale_A, dtype=float), jnp.full((d_B,), scale_B, dtype=float)]
        )
        # Sigma^-1 ~ Wishart(df, Psi^-1): a sum of df outer products of N(0, Psi^-1) vectors.
        g = jax.random.normal(k_w, (df_int, d)) / jnp.sqrt(psi_diag)
        sigma_xx = _linalg.inv(g.T @ g)
        sigma_xx = 0.5 * (sigma_xx + sigma_xx.T)
        w_star = jax.random.uniform(k_t, (d_out, d), minval=-1.0, maxval=1.0)
        sigma_yx = w_star @ sigma_xx
        sigma_yy = w_star @ sigma_xx @ w_star.T + noise**2 * jnp.eye(d_out)
        moments = check_finite_members(
            (sigma_xx, sigma_yx, sigma_yy),
            lambda bad: (
                f"scale_A = {_show(scale_A)}, scale_B = {_show(scale_B)} and noise = "
                f"{_show(noise)} give non-finite statistics (overflow); lower them."
            ),
        )
        return cls(*moments, d_A=d_A)

    @classmethod
    def from_samples(
        cls,
        x_A: Float[ArrayLike, "n dA"],
        x_B: Float[ArrayLike, "n dB"],
        y: Float[ArrayLike, "n o"] | Float[ArrayLike, " n"],
    ) -> Statistics:
        """Empirical second moments (1/n) sum_i of a finite data set (no centring: the networks
        have no biases, so these are exactly what full-batch MSE training sees).

        A non-finite sample raises (naming the array and the sample) when concrete; traced, it
        gives all-NaN statistics, which `statistics_valid` flags."""
        names = ("x_A", "x_B", "y")
        for name, a in zip(names, (x_A, x_B, y)):
            require_real(name, a, "a finite real array of samples")
        x_A, x_B, y = (jnp.asarray(a, dtype=float) for a in (x_A, x_B, y))
        x_A, x_B, y = (a[:, None] if a.ndim == 1 else a for a in (x_A, x_B, y))
        for name, a in zip(names, (x_A, x_B, y)):
            if a.ndim != 2:
                raise ValueError(
                    f"{name} must be an (n,) or (n, k) array of samples; got shape {a.shape}."
                )
        n = check_sample_counts(x_A, x_B, y)
        x_A, x_B, y = (check_finite(nm, a, label="sample") for nm, a in zip(names, (x_A, x_B, y)))
        x = jnp.concatenate([x_A, x_B], axis=1)
        moments = check_finite_members(
            (x.T @ x / n, y.T @ x / n, y.T @ y / n),
            "x_A, x_B and y give non-finite second moments (overflow in x^T x / n); "
            "rescale the samples.",
        )
        return cls(*moments, d_A=x_A.shape[1])


def require_two_modalities(stats: Statistics, what: str) -> None:
    """Raise a one-line error when `what` (a two-modality quantity) is asked of statistics with
    M > 2 modalities."""
    if stats.n_modalities != 2:
        raise ValueError(
            f"{what} is defined for two modalities (A and B); these statistics have "
            f"M = {stats.n_modalities} (dims {stats.modality_dims}). For M modalities see "
            "measure_modalities and theory.phase_times_modalities (docs/theory.md §11)."
        )
