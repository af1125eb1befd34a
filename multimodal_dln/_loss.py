"""Training objectives: the MSE loss through statistics (linear nets) or through samples.

L = 1/2 E||y - y_hat||^2 (the authors' `0.5 * MSELoss`; docs/theory.md §1). For a linear network the
population form needs only (Sigma_xx, Sigma_yx, Sigma_yy); a `Dataset` gives the sample mean.

With weight decay lambda the solvers minimize J = L + lambda/2 ||theta||^2; for depth-1 and
two-layer networks J's minimum over the weights is a convex problem in W^tot (ridge, group lasso,
lasso), solved here (`regularized_minimum`) for the convergence test and the measurements
(docs/theory.md §8).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from . import _linalg
from ._dataset import Dataset
from ._network import FusionDLN
from ._statistics import Statistics

__all__ = [
    "Objective",
    "decay_penalty",
    "linear_readout",
    "loss",
    "population_loss",
    "regularized_minimum",
    "regularized_unimodal",
    "sample_loss",
]

Objective = Statistics | Dataset


def population_loss(net: FusionDLN, stats: Statistics) -> Scalar:
    """1/2 (tr Sigma_yy - 2 tr(W Sigma_yx^T) + tr(W Sigma_xx W^T)), W = [W_A^tot, W_B^tot].

    Exact for linear networks only (raises for a nonlinear one)."""
    if not net.is_linear:
        raise ValueError(
            f"population_loss needs a linear network (activation='linear'); got "
            f"activation={net.activation!r}. Train nonlinear networks on a Dataset."
        )
    return stats.loss(net.total_weights())


def sample_loss(net: FusionDLN, data: Dataset) -> Scalar:
    """1/(2n) sum_i ||y_i - f(x_A,i, x_B,i)||^2."""
    pred = jax.vmap(net)(data.x_A, data.x_B)
    return 0.5 * jnp.mean(jnp.sum((data.y - pred) ** 2, axis=-1))


def loss(net: FusionDLN, objective: Objective) -> Scalar:
    """The MSE training loss on statistics or on a data set."""
    if isinstance(objective, Statistics):
        return population_loss(net, objective)
    if isinstance(objective, Dataset):
        return sample_loss(net, objective)
    raise TypeError(f"objective must be a Statistics or a Dataset; got {type(objective).__name__}.")


def linear_readout(net: FusionDLN, data: Dataset) -> Float[Array, "o d"]:
    """Best linear fit of the network's function on the data: E[f(x) x^T] E[x x^T]^+.

    Equals [W_A^tot, W_B^tot] for a linear network; for a ReLU network it is the functional
    analogue used to time when each modality is learned (instead of the authors' raw weight
    product, which for ReLU +/- unit pairs is twice the slope; Zhang et al. 2024's
    two-layer ReLU late fusion).
    """
    pred = jax.vmap(net)(data.x_A, data.x_B)
    x = jnp.concatenate([data.x_A, data.x_B], axis=-1)
    n = x.shape[0]
    return (pred.T @ x / n) @ _linalg.pinv_hermitian(x.T @ x / n)


# ---- weight decay: the regularized minimum (docs/theory.md §8) ---------------------------------
def decay_penalty(depth: int, fusion_layer: int, d_A: int, d_B: int, d_out: int) -> str | None:
    """The penalty that weight decay lambda/2 sum_l ||W_l||^2 induces on W^tot = [W_A, W_B] at a
    balanced minimum (docs/theory.md §8), for the structures where the regularized minimum is
    computed here:

    - "ridge": depth 1, lambda/2 ||W||^2 (every d_out);
    - "group": depth 2, early fusion (L_f = 1), d_out = 1: lambda ||W|| (the shared first layer);
    - "lasso": depth 2, late fusion (L_f = 2), scalar modalities and output:
      lambda (|W_A| + |W_B|) (each branch its own two-layer product).

    None for every other structure."""
    if depth == 1:
        return "ridge"
    if depth == 2 and d_out == 1 and fusion_layer == 1:
        return "group"
    if depth == 2 and fusion_layer == 2 and (d_A, d_B, d_out) == (1, 1, 1):
        return "lasso"
    return None


def _penalty(kind: str, w, d_A: int):
    if kind == "ridge":
        return 0.5 * jnp.sum(w**2)
    if kind == "group":
        return jnp.linalg.norm(w)
    return jnp.sum(jnp.abs(w[..., :d_A])) + jnp.sum(jnp.abs(w[..., d_A:]))


def _group_shrink(sigma, sigma_yx, lam):
    """argmin_w 1/2 w sigma w^T - sigma_yx w^T + lam ||w|| for one row w (docs/theory.md §8):
    0 when ||sigma_yx|| <= lam, else (sigma + mu I)^-1 sigma_yx^T with the mu > 0 at which
    mu ||w(mu)|| = lam (an increasing function of mu), found by 200 bisection steps."""
    evals, vecs = _linalg.eigh(sigma)
    evals = jnp.maximum(evals, 0.0)
    b = (sigma_yx @ vecs)[0]
    nb = jnp.linalg.norm(b)
    active = nb > lam
    # mu ||w(mu)|| >= mu ||b|| / (e_max + mu) reaches lam by mu = lam e_max / (||b|| - lam)
    hi = 2.0 * lam * evals[-1] / jnp.where(active, nb - lam, 1.0) + lam + 1e-300

    def bisect(_, bounds):
        lo, up = bounds
        mid = 0.5 * (lo + up)
        above = mid * jnp.linalg.norm(b / (evals + mid)) >= lam
        return jnp.where(above, lo, mid), jnp.where(above, mid, up)

    lo, up = jax.lax.fori_loop(0, 200, bisect, (jnp.zeros_like(hi), hi))
    w = (b / (evals + 0.5 * (lo + up))) @ vecs.T
    return jnp.where(active, w, 0.0)[None, :]


def _lasso2(stats: Statistics, lam):
    """argmin_W L(W) + lam (|W_A| + |W_B|) for scalar modalities and output: the minimum over
    the 9 sign patterns of (W_A, W_B) of the point solving the pattern's linear optimality
    conditions (each candidate is a feasible point, and the minimizer is one of them)."""
    (a, c), (_, d) = stats.sigma_xx[0], stats.sigma_xx[1]
    bA, bB = stats.sigma_yx[0, 0], stats.sigma_yx[0, 1]
    det = a * d - c * c
    zero = jnp.zeros((), a.dtype)
    cands = [jnp.stack([zero, zero])]
    for s in (-1.0, 1.0):
        cands.append(jnp.stack([jnp.where(a > 0, (bA - lam * s) / a, 0.0), zero]))
        cands.append(jnp.stack([zero, jnp.where(d > 0, (bB - lam * s) / d, 0.0)]))
        for t in (-1.0, 1.0):
            rA, rB = bA - lam * s, bB - lam * t
            ok = det > 1e-14 * (a * d)
            safe = jnp.where(ok, det, 1.0)
            cands.append(
                jnp.where(ok, jnp.stack([(d * rA - c * rB) / safe, (a * rB - c * rA) / safe]), 0.0)
            )
    ws = jnp.stack(cands)[:, None, :]  # (9, 1, 2)
    vals = jax.vmap(lambda w: stats.loss(w) + lam * _penalty("lasso", w, 1))(ws)
    return ws[jnp.argmin(vals)]


def regularized_minimum(
    stats: Statistics, weight_decay, depth: int, fusion_layer: int
) -> tuple[Float[Array, "o d"], Scalar]:
    """(W^lambda, J*) for one member: the minimizer over W^tot of L(W) + lambda R(W), R the
    penalty weight decay induces on the structure (`decay_penalty`), and its value, which is
    the minimum of J = L + lambda/2 ||theta||^2 over the network's weights (docs/theory.md §8).
    Unbatched statistics; raises for a structure without a closed form."""
    kind = decay_penalty(depth, fusion_layer, stats.d_A, stats.d_B, stats.d_out)
    if kind is None:
        raise ValueError(
            f"no regularized minimum for depth {depth}, fusion_layer {fusion_layer}, "
            f"(d_A, d_B, d_out) = {(stats.d_A, stats.d_B, stats.d_out)} (docs/theory.md §8)."
        )
    lam = jnp.asarray(weight_decay, stats.sigma_xx.dtype)
    if kind == "ridge":
        eye = jnp.eye(stats.d, dtype=stats.sigma_xx.dtype)
        w = stats.sigma_yx @ _linalg.inv(stats.sigma_xx + lam * eye)
    elif kind == "group":
        w = _group_shrink(stats.sigma_xx, stats.sigma_yx, lam)
    else:
        w = _lasso2(stats, lam)
    return w, stats.loss(w) + lam * _penalty(kind, w, stats.d_A)


def regularized_unimodal(stats: Statistics, weight_decay, depth: int) -> Float[Array, "o dA"]:
    """W_A^{uni,lambda}: the regularized minimum of modality A alone, where late fusion sits
    while B is still small (docs/theory.md §8): ridge (depth 1) or lambda ||W_A|| (depth 2);
    `weight_decay` 0 gives W_A^uni. One member, as `regularized_minimum`."""
    lam = jnp.asarray(weight_decay, stats.sigma_xx.dtype)
    if depth == 1:
        eye = jnp.eye(stats.d_A, dtype=stats.sigma_xx.dtype)
        return stats.sigma_yxA @ _linalg.inv(stats.sigma_A + lam * eye)
    return _group_shrink(stats.sigma_A, stats.sigma_yxA, lam)
