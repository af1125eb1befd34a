"""Training objectives: the MSE loss through statistics (linear nets) or through samples.

L = 1/2 E||y - y_hat||^2 (the authors' `0.5 * MSELoss`; docs/theory.md §1). For a linear network the
population form needs only (Sigma_xx, Sigma_yx, Sigma_yy); a `Dataset` gives the sample mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from . import _linalg
from ._dataset import Dataset
from ._network import FusionDLN
from ._statistics import Statistics

__all__ = ["loss", "population_loss", "sample_loss", "linear_readout", "Objective"]

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
