"""Per-layer learning rates in gradient flow: tau dW_l/dt = -eta_l dL/dW_l (docs/theory.md §9).

With W_l = sqrt(eta_l) W~_l the flow of W~ is plain gradient flow (tau dW~_l/dt =
-dL/dW~_l), and since every path through a `FusionDLN` crosses each layer index once, the
networks have no biases and their activations are positively homogeneous,

    f(W; x) = C f(W~; x) = f(W~; C x),    C = prod_l sqrt(eta_l),

so the loss of W on the data is the loss of W~ on the data with inputs scaled by the gain C:
`Statistics` (C^2 Sigma_xx, C Sigma_yx, Sigma_yy), samples (C x_A, C x_B, y). `gradient_flow(...,
layer_lrs=eta)` integrates that plain flow (`to_scaled`) and maps the trajectory back
(`from_scaled`): W^tot = C W~^tot (also for a ReLU network's linear readout), the final layers
W_l = sqrt(eta_l) W~_l; time and loss are unchanged. The rates therefore act as an imbalance of
the start (the conserved offsets of W_l^2 / eta_l) plus a gain, as in the reduced dynamics
(`_layers.rescale`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from . import _training as _tr
from ._dataset import Dataset
from ._layers import check_layer_lrs
from ._network import FusionDLN
from ._statistics import Statistics

__all__ = ["from_scaled", "rescaled", "to_scaled"]


def rescaled(net, objective, layer_lrs, weight_decay):
    """(network, objective, map back) of `gradient_flow`: the inputs themselves and the identity
    without rates (`layer_lrs` None), else `to_scaled`'s and `from_scaled`."""
    if layer_lrs is None:
        return net, objective, lambda traj: traj
    net, objective, rates, gain = to_scaled(net, objective, layer_lrs, weight_decay)
    return net, objective, lambda traj: from_scaled(traj, rates, gain)


def to_scaled(net: FusionDLN, objective, layer_lrs, weight_decay):
    """(W~ network, objective with inputs scaled by C, rates (batch?, L), gain C (batch?,)):
    the plain gradient flow equivalent to the rates `layer_lrs` ((L,) or (batch, L)); the
    network and objective are broadcast to the rates' batch where they have none."""
    if not isinstance(net, FusionDLN):
        raise TypeError(f"net must be a FusionDLN; got {type(net).__name__}.")
    if not _tr.decay_off(weight_decay):
        raise ValueError(
            "layer_lrs with weight_decay is not supported (the decay would act per layer as "
            "lambda eta_l); pass one of them."
        )
    rates = check_layer_lrs(layer_lrs, net.depth)
    nb, ob = _tr.batch_ndim_net(net), _tr.batch_ndim_objective(objective)
    if rates.ndim == 2:
        n = rates.shape[0]
        sizes = [net.fusion_A.shape[0]] * nb + [_tr.batch_size_objective(objective)] * ob
        if any(s != n for s in sizes):
            raise ValueError(f"layer_lrs has {n} rows but the batch has {sizes[0]} members.")
        net = net if nb else _tr.broadcast_batch(net, n)
        objective = objective if ob else _tr.broadcast_batch(objective, n)
    dtype = jax.tree.leaves(eqx.filter(net, eqx.is_array))[0].dtype
    rates = rates.astype(dtype)
    gain = jnp.prod(jnp.sqrt(rates), axis=-1)
    return _scale_layers(net, 1.0 / jnp.sqrt(rates)), _scale_inputs(objective, gain), rates, gain


def from_scaled(traj, rates, gain):
    """The trajectory of W from that of W~ (`to_scaled`): effective weights and their rate
    times C, the final layers times sqrt(eta_l)."""
    c = gain.reshape(gain.shape + (1, 1, 1))
    return eqx.tree_at(
        lambda t: (t.weights, t.weights_dot, t.final),
        traj,
        (traj.weights * c, traj.weights_dot * c, _scale_layers(traj.final, jnp.sqrt(rates))),
    )


def _scale_layers(net: FusionDLN, factors):
    """`net` with layer l's weights times factors[..., l - 1] (per member for a batch)."""
    lf = net.fusion_layer

    def times(w, layer):
        f = factors[..., layer - 1]
        return w * f.reshape(f.shape + (1, 1))

    return eqx.tree_at(
        lambda m: (m.branches, m.fusion, m.shared),
        net,
        (
            tuple(tuple(times(w, k + 1) for k, w in enumerate(b)) for b in net.branches),
            tuple(times(f, lf) for f in net.fusion),
            tuple(times(w, lf + 1 + k) for k, w in enumerate(net.shared)),
        ),
    )


def _scale_inputs(objective, gain):
    """The objective with inputs scaled by `gain` (per member): Statistics (C^2 Sigma_xx,
    C Sigma_yx, Sigma_yy), a Dataset (C x_A, C x_B, y)."""
    if isinstance(objective, Statistics):
        c = gain.reshape(gain.shape + (1, 1)).astype(objective.sigma_xx.dtype)
        return Statistics(
            c**2 * objective.sigma_xx, c * objective.sigma_yx, objective.sigma_yy,
            d_A=objective.d_A, dims=objective.dims,
        )  # fmt: skip
    if isinstance(objective, Dataset):
        c = gain.reshape(gain.shape + (1, 1)).astype(jnp.result_type(objective.x_A))
        return Dataset(c * objective.x_A, c * objective.x_B, objective.y)
    raise TypeError(f"objective must be a Statistics or a Dataset; got {type(objective).__name__}.")
