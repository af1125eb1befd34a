"""The scheduler of balanced multimodal learning, masked optax updates and the per-mode losses
(Wu et al. 2022, balanced multimodal learning, as in the authors' ``Bias_Mitigation_Strong``
callback; docs/theory.md §6).

Modes are encoded as integers: `REGULAR` (0), `CARE_0` (1, care for m0 = A) and `CARE_1`
(2, care for m1 = B).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import ArrayLike, Float

from .._statistics import Statistics
from ._diagnostics import blocked_selector, head_outputs, head_weights

__all__ = [
    "REGULAR",
    "CARE_0",
    "CARE_1",
    "ALGORITHMS",
    "scheduler_update",
    "schedule_modes",
    "masked_updates",
    "mode_loss",
]

REGULAR, CARE_0, CARE_1 = 0, 1, 2
ALGORITHMS = ("vanilla", "balanced", "random")
LOSSES = ("mse", "cross_entropy")


# ------------------------------------------------------------------------------------------------
# scheduler (Wu et al. 2022, balanced multimodal learning; docs/theory.md §6)
# ------------------------------------------------------------------------------------------------
def scheduler_update(mode, count, d, step, *, alpha, Q, warmup):
    """One callback of the authors' scheduler, run after step `step` (0-based).

    `mode` is the mode step `step` ran in, `count` the number of re-balancing steps done in the
    current window before it, `d` the current d_speed (recomputed only on regular steps).
    Returns `(next_mode, next_count)`: the mode of step `step + 1`.

    - warm-up (`step < warmup`): always regular;
    - regular step with |d| > α: the next Q steps care for k = 0 (d > α) or k = 1 (d < -α);
    - inside a window: after the Q-th re-balancing step, back to regular.
    """
    regular = mode == REGULAR
    warm = step < warmup
    trigger = regular & (jnp.abs(d) > alpha) & ~warm
    care = jnp.where(d > 0, CARE_0, CARE_1)
    count_new = jnp.where(regular, 0, count + 1)
    done = ~regular & (count_new >= Q)
    next_mode = jnp.where(
        regular, jnp.where(trigger, care, REGULAR), jnp.where(done, REGULAR, mode)
    )
    next_mode = jnp.where(warm, REGULAR, next_mode)
    return next_mode.astype(jnp.int32), jnp.where(regular | done, 0, count_new).astype(jnp.int32)


def schedule_modes(
    d: Float[ArrayLike, " n"], *, alpha: ArrayLike, Q: ArrayLike, warmup: ArrayLike = 0
):
    """Modes of steps 0..n-1 for a scripted d_speed sequence (`d[t]` is the value a regular
    step t would compute; it is ignored on re-balancing steps). Step 0 is regular."""
    d = jnp.asarray(d, dtype=float)

    def body(carry, inp):
        mode, count = carry
        t, d_t = inp
        nxt = scheduler_update(mode, count, d_t, t, alpha=alpha, Q=Q, warmup=warmup)
        return nxt, mode

    init = (jnp.asarray(REGULAR, jnp.int32), jnp.asarray(0, jnp.int32))
    _, modes = jax.lax.scan(body, init, (jnp.arange(d.shape[0]), d))
    return modes


# ------------------------------------------------------------------------------------------------
# masked updates and mode losses
# ------------------------------------------------------------------------------------------------
def masked_updates(net, variant: str = "code") -> optax.GradientTransformationExtraArgs:
    """An optax transformation that zeroes the *updates* of the parameters blocked in the
    current mode (`blocked_selector`); chain it after the optimizer and pass ``mode=`` to
    `update`. Because the updates (not only the gradients) are zeroed, blocked parameters stay
    exactly fixed under momentum, Adam or weight decay (the authors' code freezes them only
    because it uses plain SGD; docs/theory.md §6)."""
    sel0 = blocked_selector(net, 0, variant)
    sel1 = blocked_selector(net, 1, variant)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, mode=REGULAR, **extra):
        del params, extra
        for sel, care in ((sel0, CARE_0), (sel1, CARE_1)):
            hit = jnp.asarray(mode) == care
            updates = eqx.tree_at(
                sel, updates, replace_fn=lambda u, hit=hit: jnp.where(hit, jnp.zeros_like(u), u)
            )
        return updates, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def drop_weights(mode, dtype):
    """The drop weights `(drop[0], drop[1])` of a mode: 1 on the cross-modal input of the cared
    branch, else 0."""
    return ((mode == CARE_0).astype(dtype), (mode == CARE_1).astype(dtype))


def _sample_loss(pred, y, kind):
    if kind == "mse":
        return 0.5 * jnp.mean(jnp.sum((y - pred) ** 2, axis=-1))
    return jnp.mean(optax.softmax_cross_entropy(pred, y))


def mode_loss(net, objective, mode=REGULAR, replace=None, loss: str = "mse"):
    """Training loss in a mode: the sum of the heads' losses (the authors' ``blend_loss``; one
    head for `FusionDLN`), with branch k's cross-modal input replaced (`replace`, detached
    constants; zeros on statistics) in a care-k mode."""
    dtype = jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array))[0].dtype
    drop = drop_weights(jnp.asarray(mode), dtype)
    if isinstance(objective, Statistics):
        return sum(objective.loss(w) for w in head_weights(net, drop))
    heads, _ = head_outputs(net, objective.x_A, objective.x_B, drop, replace)
    return sum(_sample_loss(h, objective.y, loss) for h in heads)
