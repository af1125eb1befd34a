"""Greedy-learning diagnostics of Wu et al. (ICML 2022) on fusion networks: heads, performance,
conditional utilization rates and conditional learning speeds (docs/theory.md §6).

The definitions, the mapping of the paper's branches and parameter groups onto `FusionDLN` and
`TwoHeadFusionNet`, and the closed forms on Gaussian `Statistics` are described in the package
docstring (`multimodal_dln.greedy`) and docs/theory.md §6. All functions are pure and vectorize
with `jax.vmap` / `eqx.filter_vmap`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._dataset import Dataset
from .._network import FusionDLN, fusion_forward
from .._statistics import Statistics
from .._trajectory import Trajectory
from .._two_head import TwoHeadFusionNet
from .._validation import check_choice

__all__ = [
    "MODALITY_ROLES",
    "GROUPS",
    "METRICS",
    "Utilization",
    "n_heads",
    "head_weights",
    "head_outputs",
    "cross_means",
    "performance",
    "sample_performance",
    "utilization",
    "utilization_from_weights",
    "utilization_curve",
    "group_selectors",
    "blocked_selector",
    "mu",
    "conditional_speeds",
]

MODALITY_ROLES = {"m0": "A", "m1": "B"}
"""A plays m0, B plays m1 (docs/theory.md §6)."""

GROUPS = ("theta_0", "theta_prime_0", "theta_1", "theta_prime_1")
"""Order of the four parameter groups in `mu` and in the accumulators M."""

METRICS = ("r2", "sign_accuracy", "accuracy")

VARIANTS = ("code", "branch_only")
"""What a re-balancing step freezes in a two-head network (`blocked_selector`)."""

Net = FusionDLN | TwoHeadFusionNet


def check_net(net) -> None:
    if not isinstance(net, (FusionDLN, TwoHeadFusionNet)):
        raise TypeError(f"net must be a FusionDLN or a TwoHeadFusionNet; got {type(net).__name__}.")


# ------------------------------------------------------------------------------------------------
# network adapter: heads, cross-modal paths, effective weights
# ------------------------------------------------------------------------------------------------
def n_heads(net: Net) -> int:
    """1 for the single-head `FusionDLN`, 2 for the `TwoHeadFusionNet`."""
    check_net(net)
    return 1 if isinstance(net, FusionDLN) else 2


def head_weights(net: Net, drop: tuple[ArrayLike, ArrayLike] = (0.0, 0.0)) -> tuple[Array, ...]:
    """Effective weights `(o, d_A + d_B)` of each head of a linear network, with the cross-modal
    input of branch k scaled by ``1 - drop[k]`` (drop = 1: replaced by its mean, 0 on centred
    data).

    Single head: ``[W_A^tot (1 - drop[1]), W_B^tot (1 - drop[0])]`` (branch 0's cross-modal input
    is B's contribution). A drop weight of exactly 1 gives the dropped path exactly zero gradient.
    """
    check_net(net)
    if not net.is_linear:
        raise ValueError(
            f"head_weights needs a linear network; got activation={net.activation!r} "
            "(use head_outputs on samples)."
        )
    if isinstance(net, TwoHeadFusionNet):
        return net.head_weights(drop)
    w_A, w_B = net.effective_weights()
    return (jnp.concatenate([(1.0 - drop[1]) * w_A, (1.0 - drop[0]) * w_B], axis=-1),)


def head_outputs(
    net: Net,
    x_A: Float[Array, "n dA"],
    x_B: Float[Array, "n dB"],
    drop: tuple[ArrayLike, ArrayLike] = (0.0, 0.0),
    replace: tuple | None = None,
):
    """Batched forward pass of any fusion network: `(heads, (means_into_0, means_into_1))`.

    `heads` is a tuple of `(n, o)` outputs (one per head). The cross-modal input of branch k is
    replaced by ``replace[k]`` (a tuple of one vector per fusion point; zeros if None) with
    weight ``drop[k]``. The returned means are the batch means of the *actual* cross-modal
    inputs (single head: B's and A's fused contributions).
    """
    check_net(net)
    if isinstance(net, TwoHeadFusionNet):
        return net.forward(x_A, x_B, drop, replace)
    return fusion_forward(net, x_A, x_B, drop, replace)


def cross_means(net: Net, data: Dataset):
    """Training means of the cross-modal inputs of branch 0 and branch 1 (the constants that
    replace them in f_0' and f_1'; Wu et al. 2022, conditional utilization rate;
    docs/theory.md §6)."""
    return head_outputs(net, data.x_A, data.x_B)[1]


# ------------------------------------------------------------------------------------------------
# performance measures
# ------------------------------------------------------------------------------------------------
@eqx.filter_jit
def performance(w: Float[Array, "*batch o d"], stats: Statistics, metric: str = "r2") -> Array:
    """Closed-form performance of the linear predictor y_hat = W x on Gaussian `stats`.

    ``"r2"``: 1 - 2 L(W) / tr Σ_yy. ``"sign_accuracy"``: Sheppard's formula for labels
    sign(w* x) (scalar output).
    """
    if metric == "r2":
        return 1.0 - 2.0 * stats.loss(w) / jnp.trace(stats.sigma_yy, axis1=-2, axis2=-1)
    if metric == "sign_accuracy":
        if stats.d_out != 1:
            raise ValueError(
                f"metric='sign_accuracy' needs a scalar output; got d_out = {stats.d_out}."
            )
        w_star = stats.optimal_weights()
        sxx = stats.sigma_xx
        a = jnp.sum((w @ sxx) * w_star, axis=(-2, -1))
        b = jnp.sum((w @ sxx) * w, axis=(-2, -1))
        c = jnp.sum((w_star @ sxx) * w_star, axis=(-2, -1))
        safe = b > 0
        cos = jnp.clip(a / jnp.sqrt(jnp.where(safe, b, 1.0) * c), -1.0, 1.0)
        return jnp.where(safe, 1.0 - jnp.arccos(cos) / jnp.pi, 0.5)
    raise ValueError(f"metric must be 'r2' or 'sign_accuracy' on statistics; got {metric!r}.")


def sample_performance(
    pred: Float[Array, "n o"], y: Float[Array, "n o"], metric: str = "r2"
) -> Array:
    """Performance on samples. ``"r2"``: 1 - Σ||y - ŷ||² / Σ||y - ȳ||². ``"accuracy"``: argmax
    agreement for o > 1 (y one-hot or scores), sign agreement for o = 1."""
    if metric == "r2":
        ss_res = jnp.sum((y - pred) ** 2)
        ss_tot = jnp.sum((y - jnp.mean(y, axis=0)) ** 2)
        return 1.0 - ss_res / ss_tot
    if metric in ("accuracy", "sign_accuracy"):
        if y.shape[-1] == 1:
            hit = jnp.sign(pred[:, 0]) == jnp.sign(y[:, 0])
        else:
            hit = jnp.argmax(pred, axis=-1) == jnp.argmax(y, axis=-1)
        return jnp.mean(hit.astype(pred.dtype))
    raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")


# ------------------------------------------------------------------------------------------------
# conditional utilization rate
# ------------------------------------------------------------------------------------------------
class Utilization(eqx.Module):
    """Conditional utilization rates (Wu et al. 2022; docs/theory.md §6); arrays, batched like
    the inputs.

    - `perf`: `(..., 2)` A(f_0), A(f_1) (equal for a single-head network).
    - `perf_imputed`: `(..., 2)` A(f_0'), A(f_1') (cross-modal input at its training mean).
    - `u_10`: u(m1|m0) = (A(f_0) - A(f_0')) / A(f_0); `u_01`: u(m0|m1).
    - `d_util`: u(m1|m0) - u(m0|m1).
    """

    perf: Float[Array, "*batch 2"]
    perf_imputed: Float[Array, "*batch 2"]
    u_10: Float[Array, "*batch"]
    u_01: Float[Array, "*batch"]
    d_util: Float[Array, "*batch"]


def _rates(p0, p1, q0, q1) -> Utilization:
    u10 = (p0 - q0) / p0
    u01 = (p1 - q1) / p1
    return Utilization(
        perf=jnp.stack([p0, p1], axis=-1),
        perf_imputed=jnp.stack([q0, q1], axis=-1),
        u_10=u10,
        u_01=u01,
        d_util=u10 - u01,
    )


def utilization_from_weights(
    w_heads: tuple[Array, ...],
    w_0_imputed: Array,
    w_1_imputed: Array,
    stats: Statistics,
    metric: str = "r2",
) -> Utilization:
    """Closed form from effective weights: `w_heads` (one or two heads), and the effective
    weights of f_0' and f_1' (head 0 with its cross-modal input removed, head 1 likewise)."""
    p0 = performance(w_heads[0], stats, metric)
    p1 = performance(w_heads[-1], stats, metric)
    return _rates(
        p0, p1, performance(w_0_imputed, stats, metric), performance(w_1_imputed, stats, metric)
    )


@eqx.filter_jit
def utilization(
    net: Net,
    data: Statistics | Dataset,
    *,
    metric: str | None = None,
    train: Dataset | None = None,
) -> Utilization:
    """Conditional utilization rates of one network (vmap for a batch).

    - On `Statistics` (linear networks): the closed form; `metric` "r2" (default) or
      "sign_accuracy".
    - On a `Dataset` (any network): `data` is the evaluation (test) set; the cross-modal inputs
      are replaced by their means over `train` (default: `data`); `metric` "r2" or
      "accuracy" (default "accuracy" for o > 1, else "r2").
    """
    check_net(net)
    if isinstance(data, Statistics):
        metric = metric or "r2"
        ws = head_weights(net)
        w0p = head_weights(net, (1.0, 0.0))[0]
        w1p = head_weights(net, (0.0, 1.0))[-1]
        return utilization_from_weights(ws, w0p, w1p, data, metric)
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be Statistics or a Dataset; got {type(data).__name__}.")
    metric = metric or ("accuracy" if data.y.shape[-1] > 1 else "r2")
    means = cross_means(net, data if train is None else train)
    heads, _ = head_outputs(net, data.x_A, data.x_B)
    h0p, _ = head_outputs(net, data.x_A, data.x_B, (1.0, 0.0), means)
    h1p, _ = head_outputs(net, data.x_A, data.x_B, (0.0, 1.0), means)
    perf = lambda p: sample_performance(p, data.y, metric)  # noqa: E731
    return _rates(perf(heads[0]), perf(heads[-1]), perf(h0p[0]), perf(h1p[-1]))


@eqx.filter_jit
def utilization_curve(traj: Trajectory, stats: Statistics, metric: str = "r2") -> Utilization:
    """d_util(t) along a core `Trajectory` of single-head linear networks (closed form from the
    saved W^tot(t)); batched like the trajectory, with a trailing time axis."""
    w = traj.weights
    d_A = traj.d_A
    w_A_only = w.at[..., d_A:].set(0.0)
    w_B_only = w.at[..., :d_A].set(0.0)
    if traj.ts.ndim == 2 and stats.sigma_xx.ndim == 3:
        stats = jax.tree.map(lambda a: a[:, None], stats)
    return utilization_from_weights((w,), w_A_only, w_B_only, stats, metric)


# ------------------------------------------------------------------------------------------------
# conditional learning speed
# ------------------------------------------------------------------------------------------------
def group_selectors(net: Net) -> dict[str, Callable]:
    """For each group in `GROUPS`, a function mapping a network-shaped pytree (the parameters,
    or their gradients) to a sequence of its arrays in that group (Wu et al. 2022, conditional
    learning speed; the mapping onto fusion networks: docs/theory.md §6)."""
    check_net(net)
    if isinstance(net, FusionDLN):
        theta_A = lambda t: (*t.branch_A, t.fusion_A)  # noqa: E731
        theta_B = lambda t: (*t.branch_B, t.fusion_B)  # noqa: E731
        return {
            "theta_0": theta_A,
            "theta_prime_0": theta_B,
            "theta_1": theta_B,
            "theta_prime_1": theta_A,
        }
    # Always build a *new* sequence of the arrays: `tuple(t.layers_0)` would return the
    # field's own tuple, which `eqx.tree_at` would treat as one node.
    return {
        "theta_0": lambda t: [*t.layers_0],
        "theta_prime_0": lambda t: [*t.cross_10],
        "theta_1": lambda t: [*t.layers_1],
        "theta_prime_1": lambda t: [*t.cross_01],
    }


def blocked_selector(net: Net, k: int, variant: str = "code") -> Callable:
    """Parameters kept fixed in a re-balancing step that cares for modality k (Wu et al.
    2022, balanced multimodal learning; docs/theory.md §6).

    - Single head: the other modality's path (k = 0: ``branch_B`` + ``fusion_B``; k = 1: A's).
      Its contribution is replaced by its detached mean, so it gets exactly zero gradient;
      `variant` makes no difference.
    - Two heads, ``variant="code"`` (the authors' code): C^{(1-k)->k}, the cross-connections into
      branch k. ``"branch_only"``: also branch 1-k's own layers θ_{1-k} (the "update only one
      branch" reading of the re-balancing step).
    """
    check_choice("k (cared modality)", k, (0, 1))
    check_choice("variant", variant, VARIANTS)
    g = group_selectors(net)
    if isinstance(net, FusionDLN):
        return g["theta_prime_0"] if k == 0 else g["theta_prime_1"]
    cross = g[f"theta_prime_{k}"]
    if variant == "code":
        return cross
    own_other = g[f"theta_{1 - k}"]
    return lambda t: (*cross(t), *own_other(t))


def _sq(arrays) -> Array:
    return sum(jnp.sum(a**2) for a in arrays)


@eqx.filter_jit
def mu(grads, params) -> Float[Array, " 4"]:
    """μ(θ) = Σ ||∇_p L||² / Σ ||p||² for the four groups of `GROUPS` (Wu et al. 2022,
    conditional learning speed; docs/theory.md §6), as one array.

    `grads` and `params` are network-shaped pytrees (e.g. the network and `jax.grad` of a loss
    with respect to it). A group with zero parameter norm gives 0.
    """
    sel = group_selectors(params)
    out = []
    for name in GROUPS:
        num = _sq(sel[name](grads))
        den = _sq(sel[name](params))
        out.append(jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0))
    return jnp.stack(out)


def conditional_speeds(M: Float[Array, "*batch 4"]) -> tuple[Array, Array, Array]:
    """(s(m1|m0), s(m0|m1), d_speed) from the accumulators M (order of `GROUPS`; log10)."""
    s10 = jnp.log10(M[..., 1]) - jnp.log10(M[..., 0])
    s01 = jnp.log10(M[..., 3]) - jnp.log10(M[..., 2])
    return s10, s01, s10 - s01
