"""Balanced multimodal learning (Wu et al. 2022): the algorithm, its random variant, and a
continuous-time counterpart.

**The algorithm** (greedy digest 2.1, the authors' ``Bias_Mitigation_Strong``). Training
alternates *regular* steps and *re-balancing* steps that care for one modality k:

- On every warm-up or regular step the per-group μ of the (regular) gradient is added to the
  accumulators M, and d_speed is recomputed (`multimodal_dln.greedy`). Re-balancing steps never
  add to M, and d_speed is not recomputed inside a re-balancing window.
- After a regular step that is not in the warm-up, if |d_speed| > α the next **Q** steps
  re-balance, caring for k = 0 (m0 = A) if d_speed > α, k = 1 (m1 = B) if d_speed < -α. The
  triggering step itself was a regular step; after the window the next step is regular again
  and may trigger at once, so with |d_speed| > α throughout the duty cycle is Q/(Q+1).
- A re-balancing step for k replaces branch k's cross-modal input by its detached running mean
  (the mean over all earlier training forward passes, current batch included; 0 for linear
  networks on centred statistics). Branch k's prediction is then invariant to m_{1-k} and the
  blocked parameters (`greedy.blocked_selector`) get exactly zero gradient. Their optimizer
  *updates* are zeroed as well (digest quirk q5), so they stay fixed under momentum, Adam or
  weight decay.

With a single head (digest 4.2(a)) a re-balancing step for k is a step on the unimodal-k loss:
only k's path and the shared layers learn.

**Random variant** (digest 2.3): after the warm-up each step independently picks one of
{regular, care 0, care 1} with probability 1/3 for the next step. The accumulators are kept (on
regular steps) only as a diagnostic; they drive nothing.

**Discrete loop** `train`: optax, a `lax.scan` over save points, each advancing the state by a
`lax.fori_loop` of steps, vmapped over networks / statistics / data / learning rates / α / Q /
warm-ups / keys, with the optimizer state batched alongside. Saved: summaries on a step grid
(effective weights, loss, d_util, d_speed, mode, M), plus exact per-step counters
(first-crossing steps, steps per mode, steps with d_util below a threshold).

**Continuous counterpart** `balanced_flow` (digest 4.4, option 2): gradient flow on the
*duty-cycle averaged* vector field

    dθ/dτ = -[ (1 - w) ∇L_regular + w ∇L_care(k) ],    w = Q/(Q+1) while |d_speed| > α, else 0,
    dM/dτ = (1 - w) μ(∇L_regular) / lr,

(τ = steps x lr), with M(0) = μ(θ_0), integrated with diffrax; a diffrax event stops each
segment where |d_speed| crosses α and the next segment continues in the other mode.

Modes are encoded as integers: `REGULAR` (0), `CARE_0` (1, care for m0 = A) and `CARE_1`
(2, care for m1 = B).
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from . import greedy as _g
from ._validation import check, check_positive
from ._dataset import Dataset
from ._measurements import crossing_time
from ._network import FusionDLN
from ._statistics import Statistics
from ._two_head import TwoHeadFusionNet

__all__ = [
    "REGULAR",
    "CARE_0",
    "CARE_1",
    "ALGORITHMS",
    "scheduler_update",
    "schedule_modes",
    "masked_updates",
    "mode_loss",
    "GreedyRun",
    "train",
    "FlowRun",
    "balanced_flow",
]

REGULAR, CARE_0, CARE_1 = 0, 1, 2
ALGORITHMS = ("vanilla", "balanced", "random")
_LOSSES = ("mse", "cross_entropy")


# ------------------------------------------------------------------------------------------------
# scheduler (digest 2.1)
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
# masked updates (digest quirk q5) and mode losses
# ------------------------------------------------------------------------------------------------
def masked_updates(net, variant: str = "code") -> optax.GradientTransformationExtraArgs:
    """An optax transformation that zeroes the *updates* of the parameters blocked in the
    current mode (`greedy.blocked_selector`); chain it after the optimizer and pass
    ``mode=`` to `update`. Because the updates (not only the gradients) are zeroed, blocked
    parameters stay exactly fixed under momentum, Adam or weight decay (digest q5)."""
    sel0 = _g.blocked_selector(net, 0, variant)
    sel1 = _g.blocked_selector(net, 1, variant)

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


def _drop(mode, dtype):
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
    drop = _drop(jnp.asarray(mode), dtype)
    if isinstance(objective, Statistics):
        return sum(objective.loss(w) for w in _g.head_weights(net, drop))
    heads, _ = _g.head_outputs(net, objective.x_A, objective.x_B, drop, replace)
    return sum(_sample_loss(h, objective.y, loss) for h in heads)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
class GreedyRun(eqx.Module):
    """Result of `train` (arrays batched like the inputs; the save axis is the last but the
    trailing array dimensions).

    - `steps`: `(n,)` number of updates done at each save point (0 = initialization).
    - `lr`: learning rate; gradient-flow time of a save point is `steps * lr`.
    - `weights`: `(n, o, d)` effective weights of the model's prediction (the head average for
      two heads); linear networks only, else None.
    - `loss`: `(n,)` regular training loss (sum over heads, full training set).
    - `gen_error`: `(n,)` E_g of the prediction on the training statistics (statistics only;
      NaN on data).
    - `perf`: `(n,)` performance of the prediction: R² (statistics) or the chosen metric on the
      evaluation data.
    - `d_util`, `d_speed`: `(n,)`; `M`: `(n, 4)` accumulators (order of `greedy.GROUPS`).
    - `mode`: `(n,)` mode of the step that follows the save point.
    - `t_A_step`, `t_B_step`: first number of updates after which ||W_A|| >= ||W_A^uni|| / 2,
      ||W_B|| >= ||W*_B|| / 2 (linear networks; -1 if never).
    - `mode_counts`: `(3,)` steps run in each mode (regular, care 0, care 1).
    - `n_unimodal`, `n_inverted`: number of steps s <= `count_window` after which
      d_util < `unimodal_threshold` ("unimodal phase by utilization"), resp. d_util > 0
      ("inverted imbalance"), counted once the model has learned a modality (s >= min(t_A,
      t_B) steps; before that the prediction is ~0 and the rates are meaningless). Linear
      networks on statistics only; -1 otherwise.
    - `final`: the final network.
    """

    steps: Int[Array, "*batch n"]
    lr: Float[Array, "*batch"]
    weights: Float[Array, "*batch n o d"] | None
    loss: Float[Array, "*batch n"]
    gen_error: Float[Array, "*batch n"]
    perf: Float[Array, "*batch n"]
    d_util: Float[Array, "*batch n"]
    d_speed: Float[Array, "*batch n"]
    M: Float[Array, "*batch n 4"]
    mode: Int[Array, "*batch n"]
    t_A_step: Int[Array, "*batch"]
    t_B_step: Int[Array, "*batch"]
    mode_counts: Int[Array, "*batch 3"]
    n_unimodal: Int[Array, "*batch"]
    n_inverted: Int[Array, "*batch"]
    final: eqx.Module

    @property
    def ts(self) -> Float[Array, "*batch n"]:
        """Save points in gradient-flow time units, steps x lr."""
        return self.steps * jnp.asarray(self.lr)[..., None]

    @property
    def t_A(self) -> Float[Array, "*batch"]:
        """t_A in gradient-flow time (t_A_step x lr; NaN if never reached)."""
        return jnp.where(self.t_A_step >= 0, self.t_A_step * self.lr, jnp.nan)

    @property
    def t_B(self) -> Float[Array, "*batch"]:
        return jnp.where(self.t_B_step >= 0, self.t_B_step * self.lr, jnp.nan)

    @property
    def lag_steps(self) -> Int[Array, "*batch"]:
        """t_B - t_A in steps."""
        return self.t_B_step - self.t_A_step


class _Cfg(eqx.Module):
    algorithm: str = eqx.field(static=True)
    variant: str = eqx.field(static=True)
    make_optimizer: Callable = eqx.field(static=True)
    loss: str = eqx.field(static=True)
    metric: str = eqx.field(static=True)
    batch_size: int | None = eqx.field(static=True)
    rebalance_mean: str = eqx.field(static=True)
    count_window: Array  # traced: no recompile per value
    unimodal_threshold: Array


def _check_alpha(alpha):
    alpha = jnp.asarray(alpha, dtype=float)
    return check(
        alpha,
        ~(alpha >= 0),
        f"alpha (threshold, log10 units) must be >= 0 (inf: never re-balance); got {alpha}.",
    )


def _net_batch_ndim(net) -> int:
    a = net.fusion_A if isinstance(net, FusionDLN) else net.layers_0[0]
    return a.ndim - 2


def _obj_batch_ndim(obj) -> int:
    if isinstance(obj, Statistics):
        return obj.sigma_xx.ndim - 2
    return obj.x_A.ndim - 2


def _obj_dims(obj):
    if isinstance(obj, Statistics):
        return obj.d_A, obj.d_B, obj.d_out
    return obj.x_A.shape[-1], obj.x_B.shape[-1], obj.y.shape[-1]


def _obj_size(obj):
    return (obj.sigma_xx if isinstance(obj, Statistics) else obj.x_A).shape[0]


def _stats_diag(net, stats: Statistics, metric: str):
    """Per-step diagnostics of a linear network on statistics: prediction weights, d_util."""
    ws = _g.head_weights(net)
    w0p = _g.head_weights(net, (1.0, 0.0))[0]
    w1p = _g.head_weights(net, (0.0, 1.0))[-1]
    u = _g.utilization_from_weights(ws, w0p, w1p, stats, metric)
    w_pred = sum(ws) / len(ws)
    return w_pred, u.d_util


def _train_one(
    params, static, objective, eval_data, lr, alpha, Q, warmup, key, save_steps, cfg: _Cfg
):
    net0 = eqx.combine(params, static)
    is_stats = isinstance(objective, Statistics)
    linear = net0.is_linear
    dtype = jax.tree.leaves(params)[0].dtype
    opt = optax.chain(cfg.make_optimizer(lr), masked_updates(net0, cfg.variant))
    opt_state = opt.init(params)
    stats = objective if is_stats else (objective.statistics() if linear else None)
    if linear:
        thr_A = 0.5 * jnp.linalg.norm(stats.unimodal_weights("A"))
        thr_B = 0.5 * jnp.linalg.norm(stats.optimal_weights()[..., stats.d_A :])

    def loss_p(p, mode, replace, batch):
        return mode_loss(eqx.combine(p, static), batch, mode, replace, cfg.loss)

    grad_fn = jax.value_and_grad(loss_p)
    if is_stats:
        rm0 = None
    else:
        rm0 = jax.tree.map(jnp.zeros_like, _g.cross_means(net0, objective))
    track = is_stats  # exact per-step d_util counters (closed form)

    def summary(p, M, d, mode):
        net = eqx.combine(p, static)
        lval = mode_loss(net, objective, REGULAR, None, cfg.loss)
        if is_stats:
            w_pred, du = _stats_diag(net, objective, cfg.metric)
            eg = objective.generalization_error(w_pred)
            perf = _g.performance(w_pred, objective, "r2")
        else:
            ev = eval_data
            u = _g.utilization(net, ev, metric=cfg.metric, train=objective)
            du = u.d_util
            heads, _ = _g.head_outputs(net, ev.x_A, ev.x_B)
            pred = sum(heads) / len(heads)
            perf = _g.sample_performance(pred, ev.y, cfg.metric)
            eg = jnp.asarray(jnp.nan, dtype)
            w_pred = (sum(_g.head_weights(net)) / _g.n_heads(net)) if linear else None
        return dict(w=w_pred, loss=lval, eg=eg, perf=perf, d_util=du, d_speed=d, M=M, mode=mode)

    def step(c):
        t, p, s, mode, count, M, d, rm, k = (
            c[n] for n in ("t", "p", "s", "mode", "count", "M", "d", "rm", "key")
        )
        k, k_batch, k_rand = jax.random.split(k, 3)
        if is_stats or cfg.batch_size is None:
            batch = objective
        else:
            idx = jax.random.choice(k_batch, _obj_size(objective), (cfg.batch_size,), replace=False)
            batch = jax.tree.map(lambda a: a[idx], objective)
        replace = None
        if not is_stats:
            _, bm = _g.head_outputs(eqx.combine(p, static), batch.x_A, batch.x_B)
            bm = jax.lax.stop_gradient(bm)
            if cfg.rebalance_mean == "running":
                rm = jax.tree.map(lambda b, r: (b + r * t) / (t + 1), bm, rm)
                replace = rm
            else:
                replace = bm
        _, g = grad_fn(p, mode, replace, batch)
        regular = mode == REGULAR
        M = M + jnp.where(regular, _g.mu(g, p), 0.0)
        d = jnp.where(regular, _g.conditional_speeds(M)[2], d)
        if cfg.algorithm == "balanced":
            next_mode, count = scheduler_update(mode, count, d, t, alpha=alpha, Q=Q, warmup=warmup)
        elif cfg.algorithm == "random":
            pick = jax.random.randint(k_rand, (), 0, 3).astype(jnp.int32)
            next_mode = jnp.where(t < warmup, REGULAR, pick).astype(jnp.int32)
        else:
            next_mode = jnp.asarray(REGULAR, jnp.int32)
        updates, s = opt.update(g, s, p, mode=mode)
        p = optax.apply_updates(p, updates)
        new = dict(c, t=t + 1, p=p, s=s, mode=next_mode, count=count, M=M, d=d, rm=rm, key=k)
        new["mode_counts"] = c["mode_counts"].at[mode].add(1)
        if linear:
            net = eqx.combine(p, static)
            ws = _g.head_weights(net)
            w_pred = sum(ws) / len(ws)
            nA = jnp.linalg.norm(w_pred[..., : net.d_A])
            nB = jnp.linalg.norm(w_pred[..., net.d_A :])
            new["t_A"] = jnp.where((c["t_A"] < 0) & (nA >= thr_A), t + 1, c["t_A"])
            new["t_B"] = jnp.where((c["t_B"] < 0) & (nB >= thr_B), t + 1, c["t_B"])
        if track:
            _, du = _stats_diag(eqx.combine(p, static), objective, cfg.metric)
            # Count only once the model has learned one modality (first crossing of either):
            # before that every prediction is ~0 and the rates are not meaningful.
            learned = (new["t_A"] >= 0) | (new["t_B"] >= 0)
            counting = (t + 1 <= cfg.count_window) & learned
            new["n_uni"] = c["n_uni"] + (counting & (du < cfg.unimodal_threshold))
            new["n_inv"] = c["n_inv"] + (counting & (du > 0))
        return new

    def block(carry, bounds):
        start, stop = bounds
        carry = jax.lax.fori_loop(start, stop, lambda _, c: step(c), carry)
        out = summary(carry["p"], carry["M"], carry["d"], carry["mode"])
        out["step"] = carry["t"]
        return carry, out

    carry0 = dict(
        t=jnp.asarray(0, jnp.int32),
        p=params,
        s=opt_state,
        mode=jnp.asarray(REGULAR, jnp.int32),
        count=jnp.asarray(0, jnp.int32),
        M=jnp.zeros((4,), dtype),
        d=jnp.asarray(jnp.nan, dtype),
        rm=rm0,
        key=key,
        mode_counts=jnp.zeros((3,), jnp.int32),
        t_A=jnp.asarray(-1, jnp.int32),
        t_B=jnp.asarray(-1, jnp.int32),
        n_uni=jnp.asarray(0 if track else -1, jnp.int32),
        n_inv=jnp.asarray(0 if track else -1, jnp.int32),
    )
    first = summary(params, carry0["M"], carry0["d"], carry0["mode"])
    first["step"] = carry0["t"]
    carry, outs = jax.lax.scan(block, carry0, (save_steps[:-1], save_steps[1:]))
    saved = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, outs)
    return GreedyRun(
        steps=saved["step"],
        lr=jnp.asarray(lr, dtype),
        weights=saved["w"],
        loss=saved["loss"],
        gen_error=saved["eg"],
        perf=saved["perf"],
        d_util=saved["d_util"],
        d_speed=saved["d_speed"],
        M=saved["M"],
        mode=saved["mode"],
        t_A_step=carry["t_A"],
        t_B_step=carry["t_B"],
        mode_counts=carry["mode_counts"],
        n_unimodal=carry["n_uni"],
        n_inverted=carry["n_inv"],
        final=eqx.combine(carry["p"], static),
    )


@eqx.filter_jit
def _train_jit(
    params, static, objective, eval_data, lr, alpha, Q, warmup, key, save_steps, cfg, axes
):
    if axes is None:
        return _train_one(
            params, static, objective, eval_data, lr, alpha, Q, warmup, key, save_steps, cfg
        )
    fn = eqx.filter_vmap(
        lambda p, o, e, a, b, c, w, k: _train_one(p, static, o, e, a, b, c, w, k, save_steps, cfg),
        in_axes=axes,
    )
    return fn(params, objective, eval_data, lr, alpha, Q, warmup, key)


def train(
    net: FusionDLN | TwoHeadFusionNet,
    objective: Statistics | Dataset,
    *,
    lr: ArrayLike,
    n_steps: int,
    algorithm: str = "balanced",
    alpha: ArrayLike = 0.01,
    Q: ArrayLike = 5,
    warmup: ArrayLike = 0,
    variant: str = "code",
    optimizer: Callable[[Array], optax.GradientTransformation] | None = None,
    loss: str = "mse",
    metric: str | None = None,
    eval_data: Dataset | None = None,
    n_save: int = 200,
    save: str = "linear",
    key: PRNGKeyArray | None = None,
    batch_size: int | None = None,
    rebalance_mean: str = "running",
    count_window: int | None = None,
    unimodal_threshold: float = -0.9,
) -> GreedyRun:
    """Train with vanilla, balanced or random-re-balancing steps; one network or a batch.

    **Arguments:**

    - `net`: a `FusionDLN` or `TwoHeadFusionNet`, or a batch of them (leading axis).
    - `objective`: `Statistics` (linear networks; population gradients, MSE) or a training
      `Dataset` (any network). Shared, or batched along the same axis as `net`.
    - `lr`, `alpha` (α, log10 units), `Q` (window length, >= 1), `warmup` (warm-up steps):
      scalars or one per member (traced: no recompile per value).
    - `algorithm`: ``"vanilla"`` (regular steps only; diagnostics tracked), ``"balanced"``
      (digest 2.1) or ``"random"`` (digest 2.3).
    - `variant`: ``"code"`` or ``"branch_only"`` (`greedy.blocked_selector`).
    - `optimizer`: a function lr -> optax transformation (default `optax.sgd`: plain GD; the
      learning rate may be traced). Blocked updates are zeroed after it.
    - `loss`: ``"mse"`` (1/2 mean ||y - ŷ||², the core's loss) or ``"cross_entropy"``
      (softmax, y one-hot; data only). Two heads: the sum over heads.
    - `metric`: A(.) for d_util: ``"r2"`` (default on statistics) or ``"sign_accuracy"``;
      on data ``"accuracy"`` (default for o > 1) or ``"r2"``.
    - `eval_data`: evaluation set for d_util and `perf` on data (default: the training set);
      cross-modal means always come from the training set.
    - `n_save`, `save`: about `n_save` save points after the initial one, every
      ``ceil(n_steps / n_save)`` steps (``save="linear"``) or log-spaced (``"log"``); the last
      one is always `n_steps`.
    - `key`: PRNG key(s) for the random variant and minibatches.
    - `batch_size`: minibatch size on data (default: full batch).
    - `rebalance_mean`: on data, what replaces the cross-modal input in a re-balancing step:
      ``"running"`` (cumulative mean over all training forward passes, the authors' code) or
      ``"batch"`` (the current batch's mean). Detached either way.
    - `count_window`, `unimodal_threshold`: the counters `n_unimodal` / `n_inverted` count
      steps up to `count_window` (default all).

    **Returns:** a `GreedyRun`.
    """
    if not isinstance(net, (FusionDLN, TwoHeadFusionNet)):
        raise TypeError(f"net must be a FusionDLN or a TwoHeadFusionNet; got {type(net).__name__}.")
    if not isinstance(objective, (Statistics, Dataset)):
        raise TypeError(
            f"objective must be Statistics or a Dataset; got {type(objective).__name__}."
        )
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {algorithm!r}.")
    if variant not in ("code", "branch_only"):
        raise ValueError(f"variant must be 'code' or 'branch_only'; got {variant!r}.")
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}; got {loss!r}.")
    if rebalance_mean not in ("running", "batch"):
        raise ValueError(f"rebalance_mean must be 'running' or 'batch'; got {rebalance_mean!r}.")
    is_stats = isinstance(objective, Statistics)
    if is_stats and not net.is_linear:
        raise ValueError(
            f"a network with activation={net.activation!r} cannot train on statistics; "
            "pass a Dataset."
        )
    if is_stats and loss != "mse":
        raise ValueError(
            "loss='cross_entropy' needs a Dataset (statistics give the MSE loss only)."
        )
    if metric is None:
        metric = "r2" if is_stats or objective.y.shape[-1] == 1 else "accuracy"
    allowed = ("r2", "sign_accuracy") if is_stats else ("r2", "accuracy")
    if metric not in allowed:
        raise ValueError(f"metric must be one of {allowed} here; got {metric!r}.")
    for name, v in (("n_steps", n_steps), ("n_save", n_save)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}.")
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
    if batch_size is not None and not is_stats and batch_size > objective.x_A.shape[-2]:
        raise ValueError(
            f"batch_size must be <= the number of training samples "
            f"{objective.x_A.shape[-2]}; got {batch_size}."
        )
    if _obj_dims(objective) != (net.d_A, net.d_B, net.d_out):
        raise ValueError(
            f"network dims (d_A, d_B, d_out) = {(net.d_A, net.d_B, net.d_out)} do not match "
            f"the data's {_obj_dims(objective)}."
        )
    lr = check_positive("lr (learning rate)", jnp.asarray(lr, dtype=float))
    alpha = _check_alpha(alpha)
    Q = jnp.asarray(Q)
    Q = check(
        Q,
        (Q < 1) | (Q != jnp.round(Q)),
        f"Q (re-balancing window) must be an integer >= 1; got {Q}.",
    )
    Q = Q.astype(jnp.int32)
    warmup = jnp.asarray(warmup)
    warmup = check(
        warmup,
        (warmup < 0) | (warmup != jnp.round(warmup)),
        f"warmup must be an integer >= 0; got {warmup}.",
    )
    warmup = warmup.astype(jnp.int32)
    nb, ob = _net_batch_ndim(net), _obj_batch_ndim(objective)
    eb = 0 if eval_data is None else _obj_batch_ndim(eval_data)
    if nb > 1 or ob > 1 or eb > 1:
        raise ValueError(
            "networks, objectives and eval data may carry at most one leading batch axis."
        )
    sizes = {}
    if nb:
        sizes["net"] = (net.fusion_A if isinstance(net, FusionDLN) else net.layers_0[0]).shape[0]
    if ob:
        sizes["objective"] = _obj_size(objective)
    if eb:
        sizes["eval_data"] = _obj_size(eval_data)
    hyper = {"lr": lr, "alpha": alpha, "Q": Q, "warmup": warmup}
    for name, v in hyper.items():
        if v.ndim > 1:
            raise ValueError(
                f"{name} must be a scalar or one value per member; got shape {v.shape}."
            )
        if v.ndim == 1:
            sizes[name] = v.shape[0]
    key = jax.random.key(0) if key is None else key
    if not jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))  # legacy uint32 key(s)
    if jnp.ndim(key) == 1:
        sizes["key"] = key.shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"batch sizes differ: {sizes}.")
    batch = next(iter(sizes.values())) if sizes else None
    if batch is not None and jnp.ndim(key) == 0:
        key = jax.random.split(key, batch)
    if eval_data is None and not is_stats:
        eval_data, eb = objective, ob
    if save not in ("linear", "log"):
        raise ValueError(f"save must be 'linear' or 'log'; got {save!r}.")
    if save == "log":
        grid = np.unique(
            np.round(np.geomspace(1, int(n_steps), max(int(n_save), 2))).astype(np.int64)
        )
    else:
        every = max(1, -(-int(n_steps) // int(n_save)))
        grid = np.unique(np.minimum(np.arange(every, int(n_steps) + every, every), int(n_steps)))
    save_steps = jnp.asarray(np.concatenate([[0], grid]), dtype=jnp.int32)
    cfg = _Cfg(
        algorithm,
        variant,
        optimizer or optax.sgd,
        loss,
        metric,
        None if batch_size is None else int(batch_size),
        rebalance_mean,
        jnp.asarray(int(n_steps if count_window is None else count_window), jnp.int32),
        jnp.asarray(float(unimodal_threshold)),
    )
    params, static = eqx.partition(net, eqx.is_array)
    if batch is None:
        axes = None
    else:
        ax = lambda n: 0 if n else None  # noqa: E731
        axes = (
            ax(nb),
            ax(ob),
            ax(eb) if eval_data is not None else None,
            ax(lr.ndim),
            ax(alpha.ndim),
            ax(Q.ndim),
            ax(warmup.ndim),
            0,
        )
    return _train_jit(
        params, static, objective, eval_data, lr, alpha, Q, warmup, key, save_steps, cfg, axes
    )


# ------------------------------------------------------------------------------------------------
# continuous-time counterpart (digest 4.4, option 2)
# ------------------------------------------------------------------------------------------------
class FlowRun(eqx.Module):
    """Result of `balanced_flow` (batched like the inputs).

    - `ts`: `(n,)` save times (gradient-flow units τ = steps x lr).
    - `weights`: `(n, o, d)` effective weights of the prediction (head average).
    - `loss`, `d_util`, `d_speed`: `(n,)`; `balancing`: `(n,)` 0 regular, 1 care 0, 2 care 1,
      3 random average.
    - `t_A`, `t_B`: first times ||W_A|| >= ||W_A^uni||/2, ||W_B|| >= ||W*_B||/2 (cubic Hermite
      interpolation of the saved grid with finite-difference slopes; NaN if never).
    - `n_switches`: number of mode switches; `t_end`; `ok`: no solver failure and fewer
      segments than `max_segments`.
    """

    ts: Float[Array, "*batch n"]
    weights: Float[Array, "*batch n o d"]
    loss: Float[Array, "*batch n"]
    d_util: Float[Array, "*batch n"]
    d_speed: Float[Array, "*batch n"]
    balancing: Int[Array, "*batch n"]
    t_A: Float[Array, "*batch"]
    t_B: Float[Array, "*batch"]
    n_switches: Int[Array, "*batch"]
    n_segments: Int[Array, "*batch"]
    status: Int[Array, "*batch"]
    t_end: Float[Array, "*batch"]
    ok: Array
    final: eqx.Module


def _fd_slope(ts, y):
    """Finite-difference slopes on a non-uniform grid (central inside, one-sided at the ends)."""
    inner = (y[2:] - y[:-2]) / (ts[2:] - ts[:-2])
    first = (y[1] - y[0]) / (ts[1] - ts[0])
    last = (y[-1] - y[-2]) / (ts[-1] - ts[-2])
    return jnp.concatenate([first[None], inner, last[None]])


class _FlowCfg(eqx.Module):
    algorithm: str = eqx.field(static=True)
    variant: str = eqx.field(static=True)
    metric: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    max_segments: int = eqx.field(static=True)
    gd_correction: bool = eqx.field(static=True)


def _flow_one(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg: _FlowCfg):
    net0 = eqx.combine(params, static)
    flat0, unravel = jax.flatten_util.ravel_pytree(params)
    dtype = flat0.dtype
    block0 = _g.blocked_selector(net0, 0, cfg.variant)
    block1 = _g.blocked_selector(net0, 1, cfg.variant)
    Qf = jnp.asarray(Q, dtype)

    def grad_mode(p_tree, mode):
        g = jax.grad(lambda q: mode_loss(eqx.combine(q, static), stats, mode))(p_tree)
        for sel, care in ((block0, CARE_0), (block1, CARE_1)):
            hit = mode == care
            g = eqx.tree_at(
                sel, g, replace_fn=lambda u, hit=hit: jnp.where(hit, jnp.zeros_like(u), u)
            )
        return g

    def step_field(flat, mode):
        # -grad of the loss in `mode` with the blocked updates zeroed: one GD step is
        # flat + lr * step_field(flat, mode).
        return -jax.flatten_util.ravel_pytree(grad_mode(unravel(flat), mode))[0]

    def corrected(flat, mode):
        # Returns (f, f_mod): the step field and the field of the modified equation. GD with
        # step lr follows the flow of f - (lr/2) Df f up to O(lr^2) (first-order backward-error
        # correction; for f = -grad L it is -grad L - (lr/2) H grad L).
        if not cfg.gd_correction:
            f = step_field(flat, mode)
            return f, f
        f, jf = jax.jvp(lambda q: step_field(q, mode), (flat,), (step_field(flat, mode),))
        return f, f - 0.5 * lr * jf

    def field(t, y, mode):
        flat, M = y
        f_reg, c_reg = corrected(flat, REGULAR)
        mu = _g.mu(unravel(f_reg), unravel(flat))
        if cfg.algorithm == "random":
            rnd = mode == 3
            f_avg = (c_reg + corrected(flat, CARE_0)[1] + corrected(flat, CARE_1)[1]) / 3.0
            dflat = jnp.where(rnd, f_avg, c_reg)
            w_reg = jnp.where(rnd, 1.0 / 3.0, 1.0)
        elif cfg.algorithm == "vanilla":
            dflat, w_reg = c_reg, 1.0
        else:
            care_mode = jnp.where(mode == REGULAR, CARE_0, mode)  # any care mode when regular
            w = jnp.where(mode == REGULAR, 0.0, Qf / (Qf + 1.0))
            dflat = (1.0 - w) * c_reg + w * corrected(flat, care_mode)[1]
            w_reg = 1.0 - w
        return dflat, w_reg * mu / lr

    def d_speed_of(M):
        return _g.conditional_speeds(M)[2]

    def summary(t, y, mode):
        flat, M = y
        net = eqx.combine(unravel(flat), static)
        w_pred, du = _stats_diag(net, stats, cfg.metric)
        lval = mode_loss(net, stats, REGULAR)
        return w_pred, lval, du, d_speed_of(M), mode.astype(dtype)

    def cond(t, y, args, **kwargs):
        mode, sign = args
        return sign * (jnp.abs(d_speed_of(y[1])) - alpha)

    if cfg.atol is None:
        rms = jnp.stack([jnp.sqrt(jnp.mean(a**2)) for a in jax.tree.leaves(params)])
        atol = 1e-6 * jnp.maximum(jnp.min(rms), jnp.finfo(dtype).tiny)
    else:
        atol = cfg.atol
    controller = diffrax.PIDController(rtol=cfg.rtol, atol=atol)
    event = diffrax.Event(cond, root_finder=optx.Newton(rtol=1e-10, atol=1e-10), direction=True)

    def choose_mode(y):
        d = d_speed_of(y[1])
        if cfg.algorithm == "random":
            return jnp.asarray(3, jnp.int32)
        if cfg.algorithm == "vanilla":
            return jnp.asarray(REGULAR, jnp.int32)
        return jnp.where(jnp.abs(d) > alpha, jnp.where(d > 0, CARE_0, CARE_1), REGULAR).astype(
            jnp.int32
        )

    M0 = _g.mu(grad_mode(params, REGULAR), params)  # the first (regular) step's contribution
    y0 = (flat0, M0)
    n = ts.shape[0]
    w_shape = jax.eval_shape(lambda: summary(0.0, y0, jnp.asarray(0, jnp.int32)))
    bufs = jax.tree.map(lambda s: jnp.full((n,) + s.shape, 0, s.dtype), w_shape)
    in_warm0 = warmup_time > 0
    mode0 = jnp.where(in_warm0, REGULAR, choose_mode(y0)).astype(jnp.int32)

    def seg_cond(c):
        t, _, _, _, k, ok, _, _ = c
        return (t < t_max) & (k < cfg.max_segments) & ok

    def seg_body(c):
        t, y, mode, bufs, k, ok, n_sw, _ = c
        warm = t < warmup_time
        t1 = jnp.where(warm, jnp.minimum(warmup_time, t_max), t_max)
        # Event sign: regular -> stop when |d| rises above alpha; balancing -> when it falls
        # below; warm-up, vanilla and random segments never switch.
        switching = (cfg.algorithm == "balanced") & ~warm
        sign = jnp.where(switching, jnp.where(mode == REGULAR, 1.0, -1.0), 0.0)
        seg_ts = jnp.clip(ts, t, t1)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda tt, yy, a: field(tt, yy, a[0])),
            diffrax.Tsit5(),
            t0=t,
            t1=t1,
            # an explicit first step (one lr, i.e. one GD step) avoids diffrax's initial
            # step-size search, which would trace the vector field twice more
            dt0=jnp.minimum(lr, jnp.maximum(t1 - t, 1e-12)),
            y0=y,
            args=(mode, sign),  # sign 0 (warm-up): the event function is identically 0, never fires
            saveat=diffrax.SaveAt(
                subs=[
                    diffrax.SubSaveAt(ts=seg_ts, fn=lambda tt, yy, a: summary(tt, yy, a[0])),
                    diffrax.SubSaveAt(t1=True),
                ]
            ),
            stepsize_controller=controller,
            event=event if cfg.algorithm == "balanced" else None,
            max_steps=cfg.max_steps,
            throw=False,
            adjoint=diffrax.ForwardMode(),
        )
        saved, y_end = sol.ys
        y_end = jax.tree.map(lambda a: a[0], y_end)
        t_end = sol.ts[1][0]
        take = (ts >= t) & (ts <= t_end) & jnp.isfinite(sol.ts[0])
        bufs = jax.tree.map(
            lambda b, s: jnp.where(take.reshape((-1,) + (1,) * (b.ndim - 1)), s, b), bufs, saved
        )
        good = (sol.result == diffrax.RESULTS.successful) | (
            sol.result == diffrax.RESULTS.event_occurred
        )
        evt = sol.result == diffrax.RESULTS.event_occurred
        if cfg.algorithm == "balanced":
            flipped = jnp.where(mode == REGULAR, choose_mode_forced(y_end), REGULAR)
            new_mode = jnp.where(evt, flipped, choose_mode(y_end))
            new_mode = jnp.where(t_end < warmup_time, REGULAR, new_mode)
        else:
            new_mode = jnp.where(t_end < warmup_time, REGULAR, choose_mode(y_end))
        n_sw = n_sw + (new_mode != mode)
        return (
            t_end,
            y_end,
            new_mode.astype(jnp.int32),
            bufs,
            k + 1,
            ok & good,
            n_sw,
            sol.result._value,
        )

    def choose_mode_forced(y):
        d = d_speed_of(y[1])
        return jnp.where(d > 0, CARE_0, CARE_1).astype(jnp.int32)

    c0 = (
        jnp.zeros((), dtype),
        y0,
        mode0,
        bufs,
        jnp.asarray(0),
        jnp.asarray(True),
        jnp.asarray(0),
        diffrax.RESULTS.successful._value,
    )
    t_end, y_end, _, bufs, k, ok, n_sw, status = jax.lax.while_loop(seg_cond, seg_body, c0)
    w, lval, du, ds, modes = bufs
    d_A = net0.d_A
    nA = jnp.linalg.norm(w[..., :d_A], axis=(-2, -1))
    nB = jnp.linalg.norm(w[..., d_A:], axis=(-2, -1))
    # Crossings on the cubic Hermite interpolant with finite-difference slopes (the flow's
    # own derivative would double the compiled graph; the grid is fine, the error O(h^2)).
    dnA, dnB = _fd_slope(ts, nA), _fd_slope(ts, nB)
    thr_A = 0.5 * jnp.linalg.norm(stats.unimodal_weights("A"))
    thr_B = 0.5 * jnp.linalg.norm(stats.optimal_weights()[..., stats.d_A :])
    return FlowRun(
        ts=ts,
        weights=w,
        loss=lval,
        d_util=du,
        d_speed=ds,
        balancing=modes,
        t_A=crossing_time(ts, nA, dnA, thr_A),
        t_B=crossing_time(ts, nB, dnB, thr_B),
        n_switches=n_sw,
        n_segments=k,
        status=status,
        t_end=t_end,
        ok=ok & (t_end >= t_max),
        final=eqx.combine(unravel(y_end[0]), static),
    )


@eqx.filter_jit
def _flow_jit(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg, axes):
    if axes is None:
        return _flow_one(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg)
    fn = eqx.filter_vmap(
        lambda p, s, a, b, c, w: _flow_one(p, static, s, a, b, c, w, t_max, ts, cfg), in_axes=axes
    )
    return fn(params, stats, lr, alpha, Q, warmup_time)


def balanced_flow(
    net: FusionDLN | TwoHeadFusionNet,
    stats: Statistics,
    *,
    lr: ArrayLike,
    t_max: float,
    algorithm: str = "balanced",
    alpha: ArrayLike = 0.01,
    Q: ArrayLike = 5,
    warmup: ArrayLike = 0,
    variant: str = "code",
    metric: str = "r2",
    ts: ArrayLike | None = None,
    n_save: int = 400,
    rtol: float = 1e-8,
    atol: float | None = None,
    max_steps: int = 100_000,
    max_segments: int = 64,
    gd_correction: bool = True,
) -> FlowRun:
    """The continuous-time counterpart of `train` on population statistics (linear networks).

    Integrates the duty-cycle averaged vector field of the module docstring with diffrax
    (Tsit5, adaptive); each segment ends at a diffrax event where |d_speed| crosses α, and the
    next segment runs in the other mode (regular <-> care k, k by the sign of d_speed).
    `warmup` is in steps (warm-up time = warmup x lr); `lr` sets the time-to-steps conversion of
    M (and of the warm-up), not a step size. ``algorithm="vanilla"`` is plain gradient flow
    with the diagnostics tracked; ``"random"`` the 1/3-1/3-1/3 average after the warm-up.

    Saves on `ts` (default: t = 0 and `n_save` - 1 log-spaced times up to `t_max`).
    Batched like `train` (networks, statistics, lr, α, Q, warm-up).
    """
    if not isinstance(net, (FusionDLN, TwoHeadFusionNet)):
        raise TypeError(f"net must be a FusionDLN or a TwoHeadFusionNet; got {type(net).__name__}.")
    if not isinstance(stats, Statistics):
        raise TypeError(f"stats must be Statistics; got {type(stats).__name__}.")
    if not net.is_linear:
        raise ValueError(
            f"balanced_flow needs a linear network; got activation={net.activation!r}."
        )
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {algorithm!r}.")
    if metric not in ("r2", "sign_accuracy"):
        raise ValueError(f"metric must be 'r2' or 'sign_accuracy'; got {metric!r}.")
    if _obj_dims(stats) != (net.d_A, net.d_B, net.d_out):
        raise ValueError("network and statistics dimensions differ.")
    t_max = float(check_positive("t_max", t_max))
    lr = check_positive("lr (learning rate)", jnp.asarray(lr, dtype=float))
    alpha = _check_alpha(alpha)
    Q = jnp.asarray(Q, dtype=float)
    Q = check(Q, Q < 1, f"Q (re-balancing window) must be >= 1; got {Q}.")
    warmup = check_positive("warmup", jnp.asarray(warmup, dtype=float), allow_zero=True)
    warmup_time = warmup * lr
    if ts is None:
        from ._gradient_flow import save_grid

        ts = save_grid(t_max, int(n_save), 1e-4)
    ts = jnp.asarray(ts, dtype=float)
    cfg = _FlowCfg(
        algorithm,
        variant,
        metric,
        float(rtol),
        atol,
        int(max_steps),
        int(max_segments),
        bool(gd_correction),
    )
    params, static = eqx.partition(net, eqx.is_array)
    nb, ob = _net_batch_ndim(net), _obj_batch_ndim(stats)
    sizes = [
        s
        for s in (
            (net.fusion_A if isinstance(net, FusionDLN) else net.layers_0[0]).shape[0]
            if nb
            else None,
            stats.sigma_xx.shape[0] if ob else None,
        )
        if s is not None
    ]
    hyper = (lr, alpha, Q, warmup_time)
    sizes += [h.shape[0] for h in hyper if h.ndim == 1]
    if len(set(sizes)) > 1:
        raise ValueError(f"batch sizes differ: {sizes}.")
    if not sizes:
        return _flow_jit(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg, None)
    ax = lambda n: 0 if n else None  # noqa: E731
    axes = (ax(nb), ax(ob)) + tuple(ax(h.ndim) for h in hyper)
    return _flow_jit(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg, axes)
