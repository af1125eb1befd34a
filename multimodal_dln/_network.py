"""Fusion-depth networks: M >= 2 modality branches fused at layer L_f of an L-layer network.

Layout (Zhang et al. 2024, Fig. 1, with M = 2 modalities A and B; docs/theory.md §1, §11),
layers numbered l = 1..L:

- l = 1 .. L_f - 1: modality-specific layers W_m^l (the branches);
- l = L_f: the fusion layer, acting on [h_1; ...; h_M]; stored as its M column blocks
  W_m^{L_f} (for L_f = 1 these act on the raw inputs: early fusion);
- l = L_f + 1 .. L: shared layers; the last maps to the output (L_f = L: late fusion).

For a linear network y_hat = sum_m W_m^tot x_m with

    W_m^tot = W^L ... W^{L_f+1} W_m^{L_f} W_m^{L_f-1} ... W_m^1.

Initialization scale u0 (the paper's "init"; docs/theory.md §1) means the *per-layer* scale;
the schemes ("aligned": balanced rank-one layers, the start the theory assumes, optionally
along the solution of `align_to` statistics and with per-layer multipliers `layer_scales`;
"random": the authors' deep Gaussian scheme; "entrywise": N(0, u0^2) entries) are defined in
`multimodal_dln._init_schemes`. With aligned init, W_m^tot(0) = u0^{L_f} (sqrt(M) u0)^{L - L_f}
q_out v_m^T exactly, and for scalar modalities and output gradient flow keeps the layers rank
one (docs/theory.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._activations import ACTIVATIONS, activate, check_activation
from ._init_schemes import aligned_layers, gaussian_layers
from ._layers import check_layer_scales
from ._memory import check_solve_memory
from ._statistics import Statistics
from ._validation import (
    _show,
    check_choice,
    check_positive,
    check_positive_int,
    check_structure,
    check_widths,
    require_real,
)

__all__ = ["FusionDLN", "INIT_SCHEMES", "ACTIVATIONS", "fusion_forward", "param_count"]

INIT_SCHEMES = ("aligned", "random", "entrywise")


def modality_dims(d_A=None, d_B=None, dims=None) -> tuple[int, ...]:
    """The modalities' input sizes as Python ints: (d_A, d_B) for two modalities, or
    `dims` = (d_1, ..., d_M), M >= 2 (not both)."""
    if dims is None:
        if d_A is None or d_B is None:
            raise ValueError(
                "give the input sizes as d_A and d_B (two modalities) or as "
                f"dims=(d_1, ..., d_M); got d_A={_show(d_A)}, d_B={_show(d_B)}."
            )
        return tuple(check_positive_int(n, v) for n, v in (("d_A", d_A), ("d_B", d_B)))
    if d_A is not None or d_B is not None:
        raise ValueError(
            f"give either d_A and d_B or dims, not both; got dims={_show(dims)} with "
            f"d_A={_show(d_A)}, d_B={_show(d_B)}."
        )
    if isinstance(dims, str | bytes) or np.ndim(dims) != 1 or len(dims) < 2:
        raise ValueError(
            f"dims (the modalities' input sizes) must be a sequence of M >= 2 positive "
            f"integers; got {_show(dims)}."
        )
    return tuple(check_positive_int(f"dims[{m}]", v) for m, v in enumerate(dims))


def _structure(depth, fusion_layer, width, d_in, d_out):
    """Validated (depth, fusion_layer, widths, d_in, d_out) as Python ints."""
    depth, lf = check_structure(depth, fusion_layer)
    d_out = check_positive_int("d_out", d_out)
    return depth, lf, check_widths(width, depth), d_in, d_out


def param_count(*, depth, fusion_layer, width, d_A=None, d_B=None, d_out=1, dims=None) -> int:
    """Number of parameters of one `FusionDLN.init(depth=..., ...)` network, from its structure
    alone (no arrays are built): for memory checks before initialising."""
    d_in = modality_dims(d_A, d_B, dims)
    L, Lf, widths, d_in, d_out = _structure(depth, fusion_layer, width, d_in, d_out)
    h = (None,) + widths + (d_out,)
    n = 0
    for k in range(1, Lf + 1):  # the M branches, then the fusion layer's M column blocks
        n += h[k] * (sum(d_in) if k == 1 else len(d_in) * h[k - 1])
    return n + sum(h[k] * h[k - 1] for k in range(Lf + 1, L + 1))


def _check_memory(depth, fusion_layer, widths, d_in, d_out, width) -> None:
    """Raise before drawing any weights when one network would not fit in memory."""
    n = param_count(depth=depth, fusion_layer=fusion_layer, width=widths, dims=d_in, d_out=d_out)
    check_solve_memory(
        1,
        n,
        jax.dtypes.canonicalize_dtype(float).itemsize,
        copies=1,
        what="(the weights)",
        subject="the network",
        hint=f"lower width (got {_show(width)}) or depth (got {depth})",
    )


def _check_init_options(init, init_scale, align_to, activation, negative_slope, dims):
    """Checked (init_scale, negative_slope) for `FusionDLN.init`; raises on a bad scheme,
    activation or `align_to` (which must match the network's (d_1, ..., d_M, d_out) `dims`)."""
    check_choice("init", init, INIT_SCHEMES)
    check_activation(activation)
    init_scale = check_positive("init_scale (u0)", init_scale)
    require_real("negative_slope", negative_slope, "a finite number")
    if np.ndim(negative_slope) != 0 or not np.isfinite(float(negative_slope)):
        raise ValueError(f"negative_slope must be a finite number; got {_show(negative_slope)}.")
    if align_to is not None and not isinstance(align_to, Statistics):
        raise ValueError(f"align_to must be a Statistics or None; got {type(align_to).__name__}.")
    if align_to is not None and align_to.modality_dims + (align_to.d_out,) != dims:
        what = "(d_A, d_B, d_out)" if len(dims) == 3 else "(d_1, ..., d_M, d_out)"
        raise ValueError(
            f"align_to statistics have {what} = {align_to.modality_dims + (align_to.d_out,)} "
            f"but the network has {dims}."
        )
    return init_scale, float(negative_slope)


class FusionDLN(eqx.Module):
    """A network of total depth L with M >= 2 modality branches fused at layer L_f
    (1 <= L_f <= L); M = 2 (modalities A and B) is the papers' setting.

    **Fields** (all arrays are leaves; structure is static):

    - `branches`: per modality, the tuple of its L_f - 1 branch layers, first layer first.
    - `fusion`: per modality, its column block of the fusion layer, shape `(h_{L_f}, h_{L_f-1})`.
    - `shared`: tuple of the L - L_f post-fusion layers; the last one outputs `d_out`.
    - `depth` (L), `fusion_layer` (L_f), `activation`, `negative_slope`: static.

    `branch_A`, `branch_B`, `fusion_A`, `fusion_B` name modality 0's and 1's parts (the
    flattened leaves are in the order A's branch, B's branch, A's and B's fusion blocks, shared).
    The activation ("linear", "relu" or "leaky_relu") is applied after every layer except the
    last, as in the authors' code (docs/theory.md §1).
    """

    branches: tuple[tuple[Float[Array, "_h_out _h_in"], ...], ...]
    fusion: tuple[Float[Array, "h_f _h_m"], ...]
    shared: tuple[Float[Array, "_h_out _h_in"], ...]
    depth: int = eqx.field(static=True)
    fusion_layer: int = eqx.field(static=True)
    activation: str = eqx.field(static=True, default="linear")
    negative_slope: float = eqx.field(static=True, default=0.01)

    def __check_init__(self):
        if not (1 <= self.fusion_layer <= self.depth):
            raise ValueError(
                f"fusion_layer (L_f) must be in [1, depth] = [1, {self.depth}]; "
                f"got {self.fusion_layer}."
            )
        if len(self.branches) < 2 or len(self.fusion) != len(self.branches):
            raise ValueError(
                "branches and fusion must hold one entry per modality (M >= 2); got "
                f"{len(self.branches)} branches and {len(self.fusion)} fusion blocks."
            )
        if any(len(b) != self.fusion_layer - 1 for b in self.branches):
            raise ValueError("each branch must hold fusion_layer - 1 layers.")
        if len(self.shared) != self.depth - self.fusion_layer:
            raise ValueError("shared must hold depth - fusion_layer layers.")
        check_activation(self.activation)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        key: PRNGKeyArray,
        *,
        depth: int,
        fusion_layer: int,
        width: int | np.integer | Sequence[int] | np.ndarray,
        d_A: int | None = None,
        d_B: int | None = None,
        d_out: int = 1,
        init_scale: ArrayLike = 1e-3,
        init: Literal["aligned", "random", "entrywise"] = "random",
        align_to: Statistics | None = None,
        activation: Literal["linear", "relu", "leaky_relu"] = "linear",
        negative_slope: float = 0.01,
        layer_scales: ArrayLike | Sequence | None = None,
        dims: Sequence[int] | None = None,
    ) -> FusionDLN:
        """Build a network; `multimodal_dln._init_schemes` says what `init_scale` (u0) means per
        scheme (docs/theory.md §1).

        Input sizes: `d_A` and `d_B` (two modalities), or `dims` = (d_1, ..., d_M) for M >= 2
        modalities (docs/theory.md §11; M = 2 draws exactly the two-modality network).
        `width` is one hidden width, or a sequence of the L - 1 hidden widths h_1..h_{L-1}
        (branch layer l of every modality has h_l units). `init_scale` may be traced, so
        `eqx.filter_vmap(FusionDLN.init ...)` over keys and scales builds a batch without
        recompiling per value.

        `align_to` (``init="aligned"``): statistics whose solution W* orients the rank-one
        layers, the start the theory assumes. Without it the directions are random unit
        vectors, and a modality whose path starts pointing against its target is never learned:
        an exactly balanced rank-one path cannot change sign, it decays to zero instead (the
        solve then reports NOT_CONVERGED).

        `layer_scales` (``init="aligned"`` only; None: all 1, the balanced scheme, unchanged):
        per-layer multipliers m_l > 0, shape (L,), or (M, L) with one row per modality (rows
        equal on the shared layers l > L_f). Layer l gets scale m_l u0 (shared layers
        sqrt(M) m_l u0), so W_m^tot(0) is multiplied by prod_l m_l and the conserved offsets are
        (m_{l+1}^2 - m_l^2) u0^2 (docs/theory.md §9). Multipliers rather than an `imbalance`
        argument: they describe every depth and fusion layer with one array, leave u0 its
        meaning, and are traced (vmap over them); a target imbalance at a fixed initial product
        is converted by `theory.two_layer_scales`.
        """
        d_in = modality_dims(d_A, d_B, dims)
        depth, fusion_layer, widths, d_in, d_out = _structure(
            depth, fusion_layer, width, d_in, d_out
        )
        init_scale, negative_slope = _check_init_options(
            init, init_scale, align_to, activation, negative_slope, d_in + (d_out,)
        )
        if layer_scales is not None:
            layer_scales = check_layer_scales(layer_scales, init, depth, fusion_layer, len(d_in))
        _check_memory(depth, fusion_layer, widths, d_in, d_out, width)
        u0 = jnp.asarray(init_scale, dtype=float)
        # h[l] = output size of layer l (l = 1..L); per branch the input size is d_in[m].
        h = (None,) + widths + (d_out,)
        if init == "aligned":
            scales = (u0, layer_scales)
            parts = aligned_layers(key, h, depth, fusion_layer, d_in, scales, align_to)
        else:
            parts = gaussian_layers(key, h, depth, fusion_layer, d_in, u0, init)
        return cls(*parts, depth, fusion_layer, activation, negative_slope)

    # ---- modalities and shapes ------------------------------------------------------------------
    @property
    def n_modalities(self) -> int:
        return len(self.branches)

    @property
    def branch_A(self):  # unannotated: `eqx.tree_at` selects through it
        """Modality A's (0's) branch layers."""
        return self.branches[0]

    @property
    def branch_B(self):  # unannotated: `eqx.tree_at` selects through it
        """Modality B's (1's) branch layers."""
        return self.branches[1]

    @property
    def fusion_A(self):  # unannotated: `eqx.tree_at` selects through it
        """Modality A's block of the fusion layer."""
        return self.fusion[0]

    @property
    def fusion_B(self):  # unannotated: `eqx.tree_at` selects through it
        """Modality B's block of the fusion layer."""
        return self.fusion[1]

    @property
    def modality_dims(self) -> tuple[int, ...]:
        """(d_1, ..., d_M): the modalities' input sizes."""
        return tuple((b[0] if b else f).shape[-1] for b, f in zip(self.branches, self.fusion))

    @property
    def d_A(self) -> int:
        return self.modality_dims[0]

    @property
    def d_B(self) -> int:
        return self.modality_dims[1]

    @property
    def d_out(self) -> int:
        return (self.shared[-1] if self.shared else self.fusion[0]).shape[-2]

    @property
    def is_linear(self) -> bool:
        return self.activation == "linear"

    # ---- maps ---------------------------------------------------------------------------------
    def _act(self, h):
        return activate(h, self.activation, self.negative_slope)

    def __call__(self, *xs: Float[Array, " _d"]) -> Float[Array, " o"]:
        """Forward pass on one sample, one input per modality: `net(x_A, x_B)` (vmap for a
        batch of samples)."""
        if len(xs) != self.n_modalities:
            raise ValueError(
                f"the network has {self.n_modalities} modalities; got {len(xs)} inputs."
            )
        hs = list(xs)
        for m, branch in enumerate(self.branches):
            for w in branch:
                hs[m] = self._act(w @ hs[m])
        h = self.fusion[0] @ hs[0]
        for f, h_m in zip(self.fusion[1:], hs[1:]):
            h = h + f @ h_m
        for w in self.shared:
            h = w @ self._act(h)
        return h

    def effective_weights(self) -> tuple[Float[Array, "o _dm"], ...]:
        """(W_1^tot, ..., W_M^tot) ((W_A^tot, W_B^tot) for two modalities): products of the
        layers, multiplied from the output side (row order: O(o * params) work, cheap in reverse
        mode when o is small).

        For a nonlinear network this is the product of the weights ignoring the activation
        (the authors' `unpack_weights`), not the network's function; see
        `multimodal_dln._loss.linear_readout` for a functional definition.
        """
        if self.shared:
            row = self.shared[-1]
            for w in reversed(self.shared[:-1]):
                row = row @ w
            rows = [row @ f for f in self.fusion]
        else:
            rows = list(self.fusion)
        for m, branch in enumerate(self.branches):
            for w in reversed(branch):
                rows[m] = rows[m] @ w
        return tuple(rows)

    def total_weights(self) -> Float[Array, "o d"]:
        """[W_1^tot, ..., W_M^tot] concatenated along the input axis."""
        return jnp.concatenate(self.effective_weights(), axis=-1)


def fusion_forward(
    net: FusionDLN,
    x_A: Float[Array, "n dA"],
    x_B: Float[Array, "n dB"],
    drop: tuple[ArrayLike, ArrayLike] = (0.0, 0.0),
    replace: tuple | None = None,
):
    """Batched forward pass with the modalities' fused contributions dropped or replaced, for
    the greedy-learning diagnostics (Wu et al. 2022; docs/theory.md §6).

    The single head's "branch 0" is modality A's path and its cross-modal input is B's fused
    contribution c0 = W_B^{L_f} h_B (branch 1: c1 = W_A^{L_f} h_A, A's contribution). With
    drop weights `drop = (w0, w1)` (0 or 1 in practice; may be traced) the fusion layer's
    output is ``(1 - w1) c1 + w1 r1 + (1 - w0) c0 + w0 r0``, with r_k = `replace[k][0]` (one
    vector per fusion point; zeros when `replace` or `replace[k]` is None). A weight of exactly
    1 gives the dropped path exactly zero gradient.

    Returns `((y,), (means_into_0, means_into_1))`: the head's output `(n, o)` as a 1-tuple and
    the batch means of the *actual* cross-modal inputs `((mean c0,), (mean c1,))`, from which
    training means and running means are built (the same layout as
    `TwoHeadFusionNet.forward`).
    """
    h_A, h_B = x_A, x_B
    for w in net.branch_A:
        h_A = net._act(h_A @ w.T)
    for w in net.branch_B:
        h_B = net._act(h_B @ w.T)
    c0 = h_B @ net.fusion_B.T  # B's fused contribution: the cross-modal input of branch 0 (A)
    c1 = h_A @ net.fusion_A.T
    r0, r1 = (None, None) if replace is None else replace
    sub0 = 0.0 if r0 is None else r0[0]
    sub1 = 0.0 if r1 is None else r1[0]
    w0, w1 = drop
    h = (1.0 - w1) * c1 + w1 * sub1 + (1.0 - w0) * c0 + w0 * sub0
    for w in net.shared:
        h = net._act(h) @ w.T
    return (h,), ((jnp.mean(c0, axis=0),), (jnp.mean(c1, axis=0),))
