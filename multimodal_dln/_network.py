"""Fusion-depth networks: two modality branches fused at layer L_f of an L-layer network.

Layout (Zhang et al. 2024, Fig. 1; docs/theory.md §1), layers numbered l = 1..L:

- l = 1 .. L_f - 1: modality-specific layers W_A^l, W_B^l (the branches);
- l = L_f: the fusion layer, acting on [h_A; h_B]; stored as its two column blocks
  W_A^{L_f}, W_B^{L_f} (for L_f = 1 these act on the raw inputs: early fusion);
- l = L_f + 1 .. L: shared layers; the last maps to the output (L_f = L: late fusion).

For a linear network y_hat = W_A^tot x_A + W_B^tot x_B with

    W_m^tot = W^L ... W^{L_f+1} W_m^{L_f} W_m^{L_f-1} ... W_m^1.

Initialization scale u0 (the paper's "init"; docs/theory.md §1) means the *per-layer* scale:

- ``"aligned"``: balanced rank-one layers, W_l = s_l q_l q_{l-1}^T with unit vectors q, where
  s_l = u0 for every branch layer and for each modality's block of the fusion layer, and
  s_l = sqrt(2) u0 for the shared layers (so that W_{l+1}^T W_{l+1} = W_l W_l^T: balanced).
  Then W_m^tot(0) = u0^{L_f} (sqrt(2) u0)^{L - L_f} q_out v_m^T exactly: the initial condition
  the deep theory assumes (docs/theory.md §3). Given `align_to` statistics, the output and input
  directions are those of the solution W* = Sigma_yx Sigma_xx^+ (signs included, so the
  rank-one path can reach it); otherwise they are random unit vectors. For scalar modalities
  and output the rank-one structure is preserved exactly by gradient flow. `layer_scales`
  multiplies layer l's scale by m_l (unbalanced, "lambda-balanced" starts: the conserved
  offsets s_{l+1}^2 - s_l^2 between branch layers are then (m_{l+1}^2 - m_l^2) u0^2;
  docs/theory.md §9).
- ``"random"``: the authors' `deep_fusion` Gaussian scheme: entries N(0, std^2) with
  std = u0 / sqrt(numel) for branch layers (Frobenius norm ~ u0) and
  std = sqrt(2) u0 / sqrt(numel) for the whole fusion layer and the shared layers (norm
  ~ sqrt(2) u0; each modality's half of the fusion layer has norm ~ u0).
- ``"entrywise"``: every entry N(0, u0^2): the authors' two-layer `early_fusion`/`late_fusion`
  classes (docs/theory.md §1), where W^tot(0) ~ sqrt(width) u0^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from . import _linalg
from ._activations import ACTIVATIONS, activate, check_activation
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


def _structure(depth, fusion_layer, width, d_A, d_B, d_out):
    """Validated (depth, fusion_layer, widths, (d_A, d_B, d_out)) as Python ints."""
    depth, lf = check_structure(depth, fusion_layer)
    named = (("d_A", d_A), ("d_B", d_B), ("d_out", d_out))
    dims = tuple(check_positive_int(n, v) for n, v in named)
    return depth, lf, check_widths(width, depth), dims


def param_count(*, depth, fusion_layer, width, d_A, d_B, d_out=1) -> int:
    """Number of parameters of one `FusionDLN.init(depth=..., ...)` network, from its structure
    alone (no arrays are built): for memory checks before initialising."""
    L, Lf, widths, (d_A, d_B, d_out) = _structure(depth, fusion_layer, width, d_A, d_B, d_out)
    dims = (None,) + widths + (d_out,)
    n = 0
    for k in range(1, Lf + 1):  # the two branches, then the fusion layer's two column blocks
        n += dims[k] * ((d_A + d_B) if k == 1 else 2 * dims[k - 1])
    return n + sum(dims[k] * dims[k - 1] for k in range(Lf + 1, L + 1))


def _check_memory(depth, fusion_layer, widths, dims, width) -> None:
    """Raise before drawing any weights when one network would not fit in memory."""
    d_A, d_B, d_out = dims
    n = param_count(
        depth=depth, fusion_layer=fusion_layer, width=widths, d_A=d_A, d_B=d_B, d_out=d_out
    )
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
    activation or `align_to` (which must match the network's (d_A, d_B, d_out) `dims`)."""
    check_choice("init", init, INIT_SCHEMES)
    check_activation(activation)
    init_scale = check_positive("init_scale (u0)", init_scale)
    require_real("negative_slope", negative_slope, "a finite number")
    if np.ndim(negative_slope) != 0 or not np.isfinite(float(negative_slope)):
        raise ValueError(f"negative_slope must be a finite number; got {_show(negative_slope)}.")
    if align_to is not None and not isinstance(align_to, Statistics):
        raise ValueError(f"align_to must be a Statistics or None; got {type(align_to).__name__}.")
    if align_to is not None and (align_to.d_A, align_to.d_B, align_to.d_out) != dims:
        raise ValueError(
            "align_to statistics have (d_A, d_B, d_out) = "
            f"{(align_to.d_A, align_to.d_B, align_to.d_out)} but the network has {dims}."
        )
    return init_scale, float(negative_slope)


def _unit(key, n):
    v = jax.random.normal(key, (n,))
    return v / jnp.linalg.norm(v)


class FusionDLN(eqx.Module):
    """A two-branch network of total depth L fused at layer L_f (1 <= L_f <= L).

    **Fields** (all arrays are leaves; structure is static):

    - `branch_A`, `branch_B`: tuples of the L_f - 1 modality-specific layers, first layer first.
    - `fusion_A`, `fusion_B`: the fusion layer's column blocks, shapes `(h_{L_f}, h_{L_f - 1})`.
    - `shared`: tuple of the L - L_f post-fusion layers; the last one outputs `d_out`.
    - `depth` (L), `fusion_layer` (L_f), `activation`, `negative_slope`: static.

    The activation ("linear", "relu" or "leaky_relu") is applied after every layer except the
    last, as in the authors' code (docs/theory.md §1).
    """

    branch_A: tuple[Float[Array, "_h_out _h_in"], ...]
    branch_B: tuple[Float[Array, "_h_out _h_in"], ...]
    fusion_A: Float[Array, "h_f h_A"]
    fusion_B: Float[Array, "h_f h_B"]
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
        if (
            len(self.branch_A) != self.fusion_layer - 1
            or len(self.branch_B) != self.fusion_layer - 1
        ):
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
        d_A: int,
        d_B: int,
        d_out: int = 1,
        init_scale: ArrayLike = 1e-3,
        init: Literal["aligned", "random", "entrywise"] = "random",
        align_to: Statistics | None = None,
        activation: Literal["linear", "relu", "leaky_relu"] = "linear",
        negative_slope: float = 0.01,
        layer_scales: ArrayLike | Sequence | None = None,
    ) -> FusionDLN:
        """Build a network; see the module docstring for what `init_scale` (u0) means per scheme.

        `width` is one hidden width, or a sequence of the L - 1 hidden widths h_1..h_{L-1}
        (branch layer l of either modality has h_l units). `init_scale` may be traced, so
        `eqx.filter_vmap(FusionDLN.init ...)` over keys and scales builds a batch without
        recompiling per value.

        `layer_scales` (``init="aligned"`` only; None: all 1, the balanced scheme, unchanged):
        per-layer multipliers m_l > 0, shape (L,), or (2, L) with one row per modality (rows equal
        on the shared layers l > L_f). Layer l gets scale m_l u0 (shared layers sqrt(2) m_l u0),
        so W_m^tot(0) is multiplied by prod_l m_l and the conserved offsets are
        (m_{l+1}^2 - m_l^2) u0^2 (docs/theory.md §9). Multipliers rather than an `imbalance`
        argument: they describe every depth and fusion layer with one array, leave u0 its
        meaning, and are traced (vmap over them); a target imbalance at a fixed initial product
        is converted by `theory.two_layer_scales`.
        """
        depth, fusion_layer, widths, (d_A, d_B, d_out) = _structure(
            depth, fusion_layer, width, d_A, d_B, d_out
        )
        init_scale, negative_slope = _check_init_options(
            init, init_scale, align_to, activation, negative_slope, (d_A, d_B, d_out)
        )
        if layer_scales is not None:
            layer_scales = check_layer_scales(layer_scales, init, depth, fusion_layer)
        _check_memory(depth, fusion_layer, widths, (d_A, d_B, d_out), width)
        u0 = jnp.asarray(init_scale, dtype=float)
        # dims[l] = output size of layer l (l = 1..L); dims[0] per branch = input size.
        dims = (None,) + widths + (d_out,)
        L, Lf = depth, fusion_layer
        if init == "aligned":
            return cls._aligned(
                key, dims, L, Lf, d_A, d_B, (u0, layer_scales), align_to, activation, negative_slope
            )
        return cls._gaussian(key, dims, L, Lf, d_A, d_B, u0, init, activation, negative_slope)

    @classmethod
    def _gaussian(cls, key, dims, L, Lf, d_A, d_B, u0, init, activation, negative_slope):
        """The "random" and "entrywise" schemes (module docstring)."""
        keys = iter(jax.random.split(key, 2 * L + 2))

        def in_dim(k, d_in):
            return d_in if k == 1 else dims[k - 1]

        def gauss(shape, std):
            return std * jax.random.normal(next(keys), shape)

        def std_for(shape, factor):
            if init == "entrywise":
                return u0
            return factor * u0 / math.sqrt(shape[0] * shape[1])

        branch_A = tuple(
            gauss(s, std_for(s, 1.0)) for s in [(dims[k], in_dim(k, d_A)) for k in range(1, Lf)]
        )
        branch_B = tuple(
            gauss(s, std_for(s, 1.0)) for s in [(dims[k], in_dim(k, d_B)) for k in range(1, Lf)]
        )
        fa_shape, fb_shape = (dims[Lf], in_dim(Lf, d_A)), (dims[Lf], in_dim(Lf, d_B))
        full_shape = (dims[Lf], fa_shape[1] + fb_shape[1])
        fstd = std_for(full_shape, math.sqrt(2.0))
        fusion_A, fusion_B = gauss(fa_shape, fstd), gauss(fb_shape, fstd)
        shared = tuple(
            gauss((dims[k], dims[k - 1]), std_for((dims[k], dims[k - 1]), math.sqrt(2.0)))
            for k in range(Lf + 1, L + 1)
        )
        return cls(
            branch_A, branch_B, fusion_A, fusion_B, shared, L, Lf, activation, negative_slope
        )

    @classmethod
    def _aligned(cls, key, dims, L, Lf, d_A, d_B, scales, align_to, activation, negative_slope):
        u0, rows = scales  # rows: None (balanced) or the (L,) / (2, L) layer multipliers
        rows = None if rows is None else jnp.broadcast_to(rows, (2, L))

        def s(m, k):  # layer k's scale for modality m (0: A, 1: B); u0 itself when balanced
            return u0 if rows is None else u0 * rows[m, k - 1]

        kA, kB, kh, ko = jax.random.split(key, 4)
        if align_to is not None:
            # Directions of the solution W* = Sigma_yx Sigma_xx^+: output along its top left
            # singular vector, inputs along its modality blocks. A rank-one branch cannot change
            # sign, so aligning with W* (not with the initial drive Sigma_yx, which differs in
            # sign when Sigma_yxB < 0, docs/theory.md §2) is what lets the path reach the
            # solution: the branch then shrinks and regrows, as in the signed theory.
            w_star = align_to.optimal_weights()
            u_svd, _, _ = _linalg.svd(w_star)
            q_out = u_svd[:, 0]
            q_out = q_out * jnp.where(jnp.sum(q_out) < 0, -1.0, 1.0)

            def in_dir(block, fallback_key, n):
                v = q_out @ block
                nv = jnp.linalg.norm(v)
                return jnp.where(nv > 0, v / jnp.where(nv > 0, nv, 1.0), _unit(fallback_key, n))

            v_A, v_B = in_dir(w_star[:, :d_A], kA, d_A), in_dir(w_star[:, d_A:], kB, d_B)
        else:
            q_out, v_A, v_B = _unit(ko, dims[L]), _unit(kA, d_A), _unit(kB, d_B)
        hkeys = iter(jax.random.split(kh, 2 * L + 2))
        # Hidden unit vectors: per-branch below the fusion layer, shared above it.
        q_A = [v_A] + [_unit(next(hkeys), dims[k]) for k in range(1, Lf)]
        q_B = [v_B] + [_unit(next(hkeys), dims[k]) for k in range(1, Lf)]
        q_sh = {k: _unit(next(hkeys), dims[k]) for k in range(Lf, L)}
        q_sh[L] = q_out
        branch_A = tuple(s(0, k) * jnp.outer(q_A[k], q_A[k - 1]) for k in range(1, Lf))
        branch_B = tuple(s(1, k) * jnp.outer(q_B[k], q_B[k - 1]) for k in range(1, Lf))
        fusion_A = s(0, Lf) * jnp.outer(q_sh[Lf], q_A[Lf - 1])
        fusion_B = s(1, Lf) * jnp.outer(q_sh[Lf], q_B[Lf - 1])
        shared = tuple(
            jnp.sqrt(2.0) * s(0, k) * jnp.outer(q_sh[k], q_sh[k - 1]) for k in range(Lf + 1, L + 1)
        )
        return cls(
            branch_A, branch_B, fusion_A, fusion_B, shared, L, Lf, activation, negative_slope
        )

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def d_A(self) -> int:
        return (self.branch_A[0] if self.branch_A else self.fusion_A).shape[-1]

    @property
    def d_B(self) -> int:
        return (self.branch_B[0] if self.branch_B else self.fusion_B).shape[-1]

    @property
    def d_out(self) -> int:
        return (self.shared[-1] if self.shared else self.fusion_A).shape[-2]

    @property
    def is_linear(self) -> bool:
        return self.activation == "linear"

    # ---- maps ---------------------------------------------------------------------------------
    def _act(self, h):
        return activate(h, self.activation, self.negative_slope)

    def __call__(self, x_A: Float[Array, " dA"], x_B: Float[Array, " dB"]) -> Float[Array, " o"]:
        """Forward pass on one sample (vmap for a batch of samples)."""
        h_A, h_B = x_A, x_B
        for w in self.branch_A:
            h_A = self._act(w @ h_A)
        for w in self.branch_B:
            h_B = self._act(w @ h_B)
        h = self.fusion_A @ h_A + self.fusion_B @ h_B
        for w in self.shared:
            h = w @ self._act(h)
        return h

    def effective_weights(self) -> tuple[Float[Array, "o dA"], Float[Array, "o dB"]]:
        """(W_A^tot, W_B^tot): products of the layers, multiplied from the output side
        (row order: O(o * params) work, cheap in reverse mode when o is small).

        For a nonlinear network this is the product of the weights ignoring the activation
        (the authors' `unpack_weights`), not the network's function; see
        `multimodal_dln._loss.linear_readout` for a functional definition.
        """
        if self.shared:
            row = self.shared[-1]
            for w in reversed(self.shared[:-1]):
                row = row @ w
            row_A, row_B = row @ self.fusion_A, row @ self.fusion_B
        else:
            row_A, row_B = self.fusion_A, self.fusion_B
        for w in reversed(self.branch_A):
            row_A = row_A @ w
        for w in reversed(self.branch_B):
            row_B = row_B @ w
        return row_A, row_B

    def total_weights(self) -> Float[Array, "o d"]:
        """[W_A^tot, W_B^tot] concatenated along the input axis."""
        w_A, w_B = self.effective_weights()
        return jnp.concatenate([w_A, w_B], axis=-1)


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
