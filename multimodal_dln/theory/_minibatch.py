"""Minibatch SGD: how much later two-layer late fusion learns its first modality on a finite
sample (beyond the paper; docs/theory.md §10).

Near a small balanced start the branch of a scalar modality with minibatch drive c_k at step k
grows by a factor (1 + lr c_k) per step (`time_ratio_two_layer_gd`: the full-batch drive c is
the sample's Sigma_yxA). c_k is the mean of z_i = y_i x_A,i over the b samples of the step,
drawn without replacement from n, so E c_k = c and Var c_k = v sigma_z^2 with
v = (n - b) / (b (n - 1)) (`_minibatch.noise_scale`^2) and sigma_z^2 the variance of z over the
sample. The log-growth per unit time t = steps x lr is

    r~ = E ln(1 + lr c_k) / lr = ln(1 + lr c) / lr - (lr v / 2) sigma_z^2 / (1 + lr c)^2 + ...

(to O(lr^2 v)): the first-order noise averages out (exactly, over each epoch of a shuffle)
and its square slows the escape, so at leading order in ln(1/u0)

    t_A(SGD) / t_A(GD) = r_A(GD) / r~_A.

The same argument for B (drive s_B before A is learned, g_B after) does not predict B's time:
measured, B is learned earlier than it says (docs/theory.md §10: A's plateau under SGD sits
below W_A^uni, which raises B's residual drive), so the time ratio is measured, not predicted.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._dataset import Dataset
from .._minibatch import noise_scale
from .._validation import check_positive
from ._fixed_points import drives

__all__ = ["sgd_slowdown_two_layer"]


def sgd_slowdown_two_layer(
    data: Dataset, lr: ArrayLike, batch_size: ArrayLike
) -> Float[Array, "*batch"]:
    """Leading-order t_A(SGD) / t_A(GD) of two-layer late fusion trained with `batch_size` b on
    the n samples of `data` at learning rate `lr` (module docstring; scalar modalities and
    output; 1 at b = n):

        r_A(GD) / r~_A,  r_A(GD) = ln(1 + lr s_A) / lr,
        r~_A = r_A(GD) - (lr v / 2) Var_i(y_i x_A,i) / (1 + lr s_A)^2.
    """
    if data.x_A.shape[-1] != 1 or data.x_B.shape[-1] != 1 or data.y.shape[-1] != 1:
        raise ValueError(
            "sgd_slowdown_two_layer needs scalar modalities and output; got (d_A, d_B, d_out) "
            f"= ({data.x_A.shape[-1]}, {data.x_B.shape[-1]}, {data.y.shape[-1]})."
        )
    lr = jnp.asarray(check_positive("lr (learning rate)", lr), dtype=float)
    v = noise_scale(batch_size, data.n) ** 2
    s_A = drives(data.statistics(), signed=True).s_A
    var = jnp.var(data.y[..., 0] * data.x_A[..., 0], axis=-1)
    rate = jnp.log1p(lr * s_A) / lr
    return rate / (rate - 0.5 * lr * v * var / (1.0 + lr * s_A) ** 2)
