"""A two-head fusion network: two branches that each predict, linked by additive cross-connections.

This is the deep-linear (or ReLU) stand-in for the MMTM model of Wu et al. (2022, Fig. 1:
two uni-modal branches linked by fusion layers; docs/theory.md §6):

- branch 0 sees modality A (the paper's m0), branch 1 sees modality B (m1); each branch is a
  chain of L layers ``W^i_1 .. W^i_L`` whose last layer is that branch's head (output ŷ_i);
- at every fusion layer l (a static tuple of layer indices in 1..L) the branches exchange
  information additively:

      pre^0_l = W^0_l h^0_{l-1} + C^{1->0}_l h^1_{l-1},
      pre^1_l = W^1_l h^1_{l-1} + C^{0->1}_l h^0_{l-1},

  with h^0_0 = x_A, h^1_0 = x_B and h^i_l = act(pre^i_l) for l < L (ŷ_i = pre^i_L);
- the model's prediction is the average ŷ = (ŷ0 + ŷ1)/2 and the training loss is the *sum* of the
  branch losses (the authors' ``blend_loss``; docs/theory.md §6).

Parameter groups for the conditional learning speed (docs/theory.md §6): θ_i = the branch-i layers
(head included), θ'_i = the cross-connections *into* branch i, C^{(1-i)->i}. MMTM's
multiplicative sigmoid gating has no linear analogue; the additive cross-terms are the nearest
linear stand-in and carry every quantity of the paper over literally.

The forward pass can *replace* the cross-terms into branch k by given constants (their training
mean: the conditional utilization rate's f_k'; or their detached running mean: a re-balancing
step of balanced multi-modal learning; Wu et al. 2022, docs/theory.md §6). It returns the
batch means of the actual cross-terms, from which those constants are built.
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

from ._activations import activate, check_activation
from ._validation import check_choice, check_positive, check_positive_int, check_widths

__all__ = ["TwoHeadFusionNet"]


class TwoHeadFusionNet(eqx.Module):
    """Two predicting branches of depth L with additive cross-connections at `fusion_layers`.

    **Fields** (arrays are leaves; structure is static):

    - `layers_0`, `layers_1`: the L layers of branch 0 (modality A) and branch 1 (modality B);
      the last one of each is that branch's head, shape `(d_out, h_{L-1})`.
    - `cross_10`: C^{1->0}_l, one per fusion layer, shape `(h_l, h_{l-1} of branch 1)`
      (into branch 0, from branch 1); `cross_01`: C^{0->1}_l (into branch 1).
    - `depth` (L), `fusion_layers` (sorted tuple in 1..L), `activation`, `negative_slope`.
    """

    layers_0: tuple[Float[Array, "_h_out _h_in"], ...]
    layers_1: tuple[Float[Array, "_h_out _h_in"], ...]
    cross_10: tuple[Float[Array, "_h_out _h_in"], ...]
    cross_01: tuple[Float[Array, "_h_out _h_in"], ...]
    depth: int = eqx.field(static=True)
    fusion_layers: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True, default="linear")
    negative_slope: float = eqx.field(static=True, default=0.01)

    def __check_init__(self):
        if len(self.layers_0) != self.depth or len(self.layers_1) != self.depth:
            raise ValueError(f"each branch must hold depth = {self.depth} layers.")
        if len(self.cross_10) != len(self.fusion_layers) or len(self.cross_01) != len(
            self.fusion_layers
        ):
            raise ValueError("cross_10 and cross_01 must hold one matrix per fusion layer.")
        check_activation(self.activation)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        key: PRNGKeyArray,
        *,
        depth: int,
        fusion_layers: int | Sequence[int],
        width: int | np.integer | Sequence[int] | np.ndarray,
        d_A: int,
        d_B: int,
        d_out: int = 1,
        init_scale: ArrayLike = 1e-3,
        init: Literal["random", "entrywise"] = "random",
        cross_scale: ArrayLike | None = None,
        activation: Literal["linear", "relu", "leaky_relu"] = "linear",
        negative_slope: float = 0.01,
    ) -> TwoHeadFusionNet:
        """Gaussian initialization.

        - `fusion_layers`: layer indices l in [1, L] that get cross-connections (an int or a
          sequence; l = 1 mixes the raw inputs, l = L connects each head to the other branch).
        - `width`: one hidden width or the L - 1 hidden widths.
        - `init="random"`: entries N(0, (u0 / sqrt(numel))^2), so every matrix has Frobenius norm
          ~ u0 (the authors' deep scheme); `"entrywise"`: entries N(0, u0^2).
        - `cross_scale`: u0 of the cross-connections (default: `init_scale`).
        """
        depth = check_positive_int("depth (L)", depth)
        if depth < 2:
            raise ValueError(
                f"depth (L) must be >= 2 for a network with hidden layers; got {depth}."
            )
        fl = (fusion_layers,) if isinstance(fusion_layers, int) else tuple(fusion_layers)
        if not fl or any(
            isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= depth for k in fl
        ):
            raise ValueError(
                f"fusion_layers must be a non-empty set of integers in [1, depth] = [1, {depth}]; "
                f"got {fusion_layers!r}."
            )
        fl = tuple(sorted(set(fl)))
        d_A, d_B, d_out = (
            check_positive_int(n, v) for n, v in (("d_A", d_A), ("d_B", d_B), ("d_out", d_out))
        )
        widths = check_widths(width, depth)
        check_choice("init", init, ("random", "entrywise"))
        check_activation(activation)
        u0 = jnp.asarray(check_positive("init_scale (u0)", init_scale), dtype=float)
        uc = (
            u0
            if cross_scale is None
            else jnp.asarray(check_positive("cross_scale", cross_scale), dtype=float)
        )
        dims0 = (d_A,) + widths + (d_out,)
        dims1 = (d_B,) + widths + (d_out,)
        keys = iter(jax.random.split(key, 4 * depth))

        def gauss(shape, scale):
            std = scale if init == "entrywise" else scale / math.sqrt(shape[0] * shape[1])
            return std * jax.random.normal(next(keys), shape)

        layers_0 = tuple(gauss((dims0[k], dims0[k - 1]), u0) for k in range(1, depth + 1))
        layers_1 = tuple(gauss((dims1[k], dims1[k - 1]), u0) for k in range(1, depth + 1))
        cross_10 = tuple(gauss((dims0[k], dims1[k - 1]), uc) for k in fl)
        cross_01 = tuple(gauss((dims1[k], dims0[k - 1]), uc) for k in fl)
        return cls(layers_0, layers_1, cross_10, cross_01, depth, fl, activation, negative_slope)

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def d_A(self) -> int:
        return self.layers_0[0].shape[-1]

    @property
    def d_B(self) -> int:
        return self.layers_1[0].shape[-1]

    @property
    def d_out(self) -> int:
        return self.layers_0[-1].shape[-2]

    @property
    def is_linear(self) -> bool:
        return self.activation == "linear"

    def _act(self, h):
        return activate(h, self.activation, self.negative_slope)

    # ---- maps ---------------------------------------------------------------------------------
    def forward(
        self,
        x_A: Float[Array, "n dA"],
        x_B: Float[Array, "n dB"],
        drop: tuple[ArrayLike, ArrayLike] = (0.0, 0.0),
        replace: tuple | None = None,
    ):
        """Batched forward pass with optional replacement of the cross-terms.

        - `drop = (w0, w1)`: weights in [0, 1] (0 or 1 in practice, may be traced). The
          cross-term into branch k is ``(1 - w_k) C h + w_k r_k`` with r_k the constants of
          `replace[k]` (one vector per fusion layer; zeros when `replace` is None). With
          w_k = 1, branch k sees modality 1-k only through the constants, and C^{(1-k)->k}
          receives exactly zero gradient (it is multiplied by 0).
        - Returns `((y0, y1), (means_into_0, means_into_1))`: the two heads' outputs `(n, o)`
          and the batch means of the *actual* cross-terms (tuples over fusion layers), from
          which training means and running means are built.
        """
        w0, w1 = drop
        if replace is None:
            replace = (None, None)
        r0, r1 = replace
        h0, h1 = x_A, x_B
        m0, m1 = [], []
        j = 0
        for layer in range(1, self.depth + 1):
            p0 = h0 @ self.layers_0[layer - 1].T
            p1 = h1 @ self.layers_1[layer - 1].T
            if layer in self.fusion_layers:
                c0 = h1 @ self.cross_10[j].T  # into branch 0, from branch 1
                c1 = h0 @ self.cross_01[j].T
                m0.append(jnp.mean(c0, axis=0))
                m1.append(jnp.mean(c1, axis=0))
                c0_sub = 0.0 if r0 is None else r0[j]
                c1_sub = 0.0 if r1 is None else r1[j]
                p0 = p0 + (1.0 - w0) * c0 + w0 * c0_sub
                p1 = p1 + (1.0 - w1) * c1 + w1 * c1_sub
                j += 1
            if layer < self.depth:
                h0, h1 = self._act(p0), self._act(p1)
            else:
                h0, h1 = p0, p1
        return (h0, h1), (tuple(m0), tuple(m1))

    def __call__(self, x_A: Float[Array, " dA"], x_B: Float[Array, " dB"]) -> Float[Array, " o"]:
        """The model's prediction on one sample: the average of the two heads."""
        (y0, y1), _ = self.forward(x_A[None], x_B[None])
        return 0.5 * (y0[0] + y1[0])

    def heads(self, x_A: Float[Array, " dA"], x_B: Float[Array, " dB"]):
        """(ŷ0, ŷ1) on one sample."""
        (y0, y1), _ = self.forward(x_A[None], x_B[None])
        return y0[0], y1[0]

    def head_weights(self, drop: tuple[ArrayLike, ArrayLike] = (0.0, 0.0)):
        """Linear network only: each head's effective weights `(o, d_A + d_B)` (inputs in the
        order [x_A, x_B]), with the cross-terms into branch k scaled by 1 - drop[k] (i.e.
        replaced by zero, their mean on centred data)."""
        if not self.is_linear:
            raise ValueError(
                f"head_weights needs a linear network; got activation={self.activation!r}."
            )
        d = self.d_A + self.d_B
        eye = jnp.eye(d, dtype=self.layers_0[0].dtype)
        (y0, y1), _ = self.forward(eye[:, : self.d_A], eye[:, self.d_A :], drop)
        return y0.T, y1.T

    def effective_weights(self):
        """(W_A^tot, W_B^tot) of the model's prediction ŷ = (ŷ0 + ŷ1)/2 (linear network)."""
        w0, w1 = self.head_weights()
        w = 0.5 * (w0 + w1)
        return w[:, : self.d_A], w[:, self.d_A :]

    def total_weights(self):
        w_A, w_B = self.effective_weights()
        return jnp.concatenate([w_A, w_B], axis=-1)
