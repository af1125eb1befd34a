"""Per-layer scales of the aligned rank-one layout and their conserved offsets (unbalanced,
"lambda-balanced" starts and per-layer learning rates; docs/theory.md §9). Private: used by
`FusionDLN.init(..., layer_scales=...)` and the reduced dynamics (`_reduced_dynamics`,
`_reduced_solve`). Arrays may carry leading batch axes.

**Offsets.** Gradient flow conserves W_{l+1}^T W_{l+1} - W_l W_l^T. In the rank-one aligned
layout W_l = s_l q_l q_{l-1}^T this is s_{l+1}^2 - s_l^2 = const, so an unbalanced start keeps
its offsets for ever. A reduced state holds per modality m a free vector rho_m along the first
layer's row (and along W_m^tot) whose norm is the scale of the smallest layer of m's chain
(layers 1..L_f, the fusion block last), the offsets of that chain above it,
``branch_offsets[m, l - 1] = s_{m,l}^2 - |rho_m|^2 >= 0`` (one of them 0; all 0 when
balanced), and ``shared_offsets[l - L_f - 1] = v_l^2 - |rho_A|^2 - |rho_B|^2`` for the shared
layers l = L_f+1..L (differences of conserved quantities, so conserved). Every scale is then
sqrt(|rho_m|^2 + offset), a sum: the smallest layer keeps full relative precision at any
imbalance, which measuring from the first layer would lose to cancellation. With multipliers
m_l (`FusionDLN.init`: chain layers m_{m,l} u0, shared layers sqrt(2) m_l u0) |rho_m| =
min_l m_{m,l} u0 and the offsets are (m_{m,l}^2 - min_l m_{m,l}^2) u0^2.

**Per-layer learning rates** eta_l (tau dW_l/dt = -eta_l dL/dW_l) conserve
W_{l+1}^T W_{l+1} / eta_{l+1} - W_l W_l^T / eta_l instead: with W_l = sqrt(eta_l) W~_l the flow
is plain gradient flow of W~ with every error term multiplied by the gain C = prod_l sqrt(eta_l)
and W^tot = C W~^tot. So rates are an imbalance (the offsets of s_l^2 / eta_l, `rescale`) plus
a gain.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._validation import check, check_positive

__all__ = [
    "check_layer_lrs",
    "check_layer_scales",
    "derived_offset",
    "layered_weights",
    "mean_log_scale",
    "network_layers",
    "normalized",
    "rescale",
    "scale_offsets",
]


def check_layer_scales(layer_scales, init: str, depth: int, fusion_layer: int, n_modalities=2):
    """`layer_scales` (docs/theory.md §9) as a float array of shape (L,) or (M, L) (one row per
    modality): aligned init only, finite and > 0 (traced: NaN where not), the rows of an (M, L)
    array equal on the shared layers l > L_f."""
    if init != "aligned":
        raise ValueError(f"layer_scales needs init='aligned'; got init={init!r}.")
    shape, m = np.shape(layer_scales), n_modalities
    if shape not in ((depth,), (m, depth)):
        raise ValueError(
            f"layer_scales must have shape (depth,) = ({depth},) or (M, depth) = ({m}, {depth}) "
            f"(one row per modality); got shape {shape}."
        )
    scales = jnp.asarray(check_positive("layer_scales", layer_scales), dtype=float)
    if len(shape) == 1 or depth == fusion_layer:
        return scales
    shared = scales[:, fusion_layer:]
    rule = f"layer_scales rows must agree on the shared layers {fusion_layer + 1}..{depth}"
    bad = jnp.any(shared != shared[:1])
    return check(scales, bad, lambda _: f"{rule}; got {np.asarray(scales).tolist()}.")


def check_layer_lrs(layer_lrs, depth: int):
    """Per-layer learning rates eta_l: finite and > 0, shape (L,) or (batch, L)."""
    shape = np.shape(layer_lrs)
    if len(shape) not in (1, 2) or shape[-1] != depth:
        raise ValueError(
            f"layer_lrs must have shape (depth,) = ({depth},) or (batch, depth); got shape {shape}."
        )
    return jnp.asarray(check_positive("layer_lrs", layer_lrs), dtype=float)


# ---- offsets of a layout (batched arrays) ----------------------------------------------------
def scale_offsets(u0, rows, fusion_layer: int):
    """(free scales (..., 2), branch offsets (..., 2, L_f), shared offsets (..., L - L_f)) of the
    aligned layout with per-layer multipliers `rows` (..., 2, L): layer l of modality m has scale
    m_{m,l} u0 (l <= L_f), the shared layers sqrt(2) m_l u0 (`FusionDLN.init`). Exact: no
    difference of nearly equal squares is formed."""
    lf = fusion_layer
    u0 = jnp.asarray(u0, dtype=float)
    m2 = rows[..., :, :lf] ** 2
    low2 = jnp.min(m2, -1)
    u2 = (u0**2)[..., None]
    branch = u2[..., None] * (m2 - low2[..., None])
    shared = u2 * (2.0 * rows[..., 0, lf:] ** 2 - jnp.sum(low2, -1)[..., None])
    return u0[..., None] * jnp.sqrt(low2), branch, shared


def _free2(rho_A, rho_B):
    return jnp.stack([jnp.sum(rho_A**2, -1), jnp.sum(rho_B**2, -1)], -1)


def derived_offset(shared):
    """`ReducedState.offset`: v^2 - |rho_A|^2 - |rho_B|^2 of the first shared layer (0 without
    shared layers)."""
    return shared[..., 0] if shared.shape[-1] else jnp.zeros(shared.shape[:-1])


def normalized(rho_A, rho_B, branch, shared):
    """The same layout with each chain's smallest offset 0 (rho_m then has the scale of m's
    smallest layer): a no-op for states built here, exact when the offsets are >= 0."""
    low = jnp.min(branch, -1)
    f2 = _free2(rho_A, rho_B)
    grow = jnp.sqrt((f2 + low) / f2)
    rho_A, rho_B = rho_A * grow[..., :1], rho_B * grow[..., 1:]
    return rho_A, rho_B, branch - low[..., None], shared - jnp.sum(low, -1)[..., None]


def layered_weights(rho_A, rho_B, branch, shared):
    """(W_A^tot, W_B^tot), shapes (..., 1, d_m), of a normalized state: prod over m's chain of
    the layers other than the smallest, times the shared layers' product, times rho_m."""
    f2 = _free2(rho_A, rho_B)
    s2 = f2[..., None] + branch
    others = jnp.arange(branch.shape[-1]) != jnp.argmin(branch, -1)[..., None]
    q = jnp.prod(jnp.where(others, jnp.sqrt(s2), 1.0), -1)
    v = jnp.prod(jnp.sqrt(jnp.sum(f2, -1)[..., None] + shared), -1)
    f = q * v[..., None]
    return (f[..., 0, None] * rho_A)[..., None, :], (f[..., 1, None] * rho_B)[..., None, :]


def rescale(rho_A, rho_B, branch, shared, factors):
    """The state (normalized) with layer l's squared scale divided by factors[l - 1] (`factors`
    = eta: to the coordinates W~_l = W_l / sqrt(eta_l) of per-layer rates; 1 / eta: back)."""
    lf = branch.shape[-1]
    f2 = _free2(rho_A, rho_B)
    s2 = (f2[..., None] + branch) / factors[..., None, :lf]
    v2 = (jnp.sum(f2, -1)[..., None] + shared) / factors[..., lf:]
    low2 = jnp.min(s2, -1)
    grow = jnp.sqrt(low2 / f2)
    return (
        rho_A * grow[..., :1],
        rho_B * grow[..., 1:],
        s2 - low2[..., None],
        v2 - jnp.sum(low2, -1)[..., None],
    )


def mean_log_scale(rho_A, rho_B, branch, shared):
    """Mean log of the 2 L_f + (L - L_f) layer scales (for the horizon estimate)."""
    f2 = _free2(rho_A, rho_B)
    s2 = f2[..., None] + branch
    v2 = jnp.sum(f2, -1)[..., None] + shared
    logs = jnp.sum(jnp.log(s2), (-2, -1)) + jnp.sum(jnp.log(v2), -1)
    return 0.5 * logs / (2 * branch.shape[-1] + shared.shape[-1])


def network_layers(net):
    """(free scales (..., 2), branch offsets (..., 2, L_f), shared offsets (..., L - L_f)) of
    an aligned rank-one `FusionDLN` (optionally batched), from its layers' Frobenius norms."""
    sq = lambda a: jnp.sum(a**2, axis=(-2, -1))  # noqa: E731
    pairs = ((net.branch_A, net.fusion_A), (net.branch_B, net.fusion_B))
    s2 = jnp.stack([jnp.stack([sq(w) for w in br + (fu,)], -1) for br, fu in pairs], -2)
    low2 = jnp.min(s2, -1)
    shared = [sq(w) - jnp.sum(low2, -1) for w in net.shared]
    batch = low2.shape[:-1]
    shared = jnp.stack(shared, -1) if shared else jnp.zeros(batch + (0,))
    return jnp.sqrt(low2), s2 - low2[..., None], shared
