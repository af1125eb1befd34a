"""The activation table of the fusion networks (`FusionDLN`, `TwoHeadFusionNet`).

"linear" gives the deep linear networks the theory is about; "relu" and "leaky_relu" the
nonlinear extensions (Zhang et al. 2024 use LeakyReLU(negative_slope), slope 1 being linear, and
ReLU for the nonlinear experiments; docs/theory.md §1). The activation follows every layer but
the last.
"""

from __future__ import annotations

import jax
from jaxtyping import Array, Float

from ._validation import check_choice

__all__ = ["ACTIVATIONS", "activate", "check_activation"]

_TABLE = {
    "linear": lambda h, negative_slope: h,
    "relu": lambda h, negative_slope: jax.nn.relu(h),
    "leaky_relu": lambda h, negative_slope: jax.nn.leaky_relu(h, negative_slope),
}

ACTIVATIONS = tuple(_TABLE)
"""The activation names a network accepts."""


def activate(h: Float[Array, ...], activation: str, negative_slope: float) -> Float[Array, ...]:
    """`activation` applied entrywise to `h` (`negative_slope` is used by "leaky_relu" only)."""
    return _TABLE[activation](h, negative_slope)


def check_activation(activation) -> str:
    """One of `ACTIVATIONS`, else a `ValueError` listing them."""
    return check_choice("activation", activation, ACTIVATIONS)
