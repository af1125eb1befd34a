"""The discrete trainer `train`: vanilla, balanced or random re-balancing steps with optax
(Wu et al. 2022, balanced multimodal learning; docs/theory.md §6).

A `lax.scan` over save points, each advancing the state by a `lax.fori_loop` of steps, vmapped
over networks / statistics / data / learning rates / α / Q / warm-ups / keys, with the optimizer
state batched alongside. Argument checks and batch resolution: `_args`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int, Key, PRNGKeyArray

from .._dataset import Dataset
from .._network import FusionDLN
from .._statistics import Statistics
from .._two_head import TwoHeadFusionNet
from . import _diagnostics as _g
from ._args import TrainCfg, prepare_train
from ._common import half_thresholds, obj_size, stats_diag
from ._schedule import REGULAR, masked_updates, mode_loss, scheduler_update

__all__ = ["GreedyRun", "train"]


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


class _Loop:
    """The training loop of one member (plain Python, built inside the trace): what every step
    closes over, the step itself and the save-point summary."""

    def __init__(self, params, static, objective, eval_data, lr, hyper, cfg: TrainCfg):
        self.static, self.objective, self.eval_data, self.cfg = static, objective, eval_data, cfg
        self.alpha, self.Q, self.warmup = hyper
        net0 = eqx.combine(params, static)
        self.is_stats = isinstance(objective, Statistics)
        self.linear = net0.is_linear
        self.dtype = jax.tree.leaves(params)[0].dtype
        self.opt = optax.chain(cfg.make_optimizer(lr), masked_updates(net0, cfg.variant))
        self.opt_state0 = self.opt.init(params)
        if self.linear:
            stats = objective if self.is_stats else objective.statistics()
            self.thr_A, self.thr_B = half_thresholds(stats)

        def loss_p(p, mode, replace, batch):
            return mode_loss(eqx.combine(p, static), batch, mode, replace, cfg.loss)

        self.grad_fn = jax.value_and_grad(loss_p)
        if self.is_stats:
            self.rm0 = None
        else:
            self.rm0 = jax.tree.map(jnp.zeros_like, _g.cross_means(net0, objective))
        self.track = self.is_stats  # exact per-step d_util counters (closed form)

    def summary(self, p, M, d, mode):
        net = eqx.combine(p, self.static)
        cfg, objective = self.cfg, self.objective
        lval = mode_loss(net, objective, REGULAR, None, cfg.loss)
        if self.is_stats:
            w_pred, du = stats_diag(net, objective, cfg.metric)
            eg = objective.generalization_error(w_pred)
            perf = _g.performance(w_pred, objective, "r2")
        else:
            ev = self.eval_data
            du = _g.utilization(net, ev, metric=cfg.metric, train=objective).d_util
            heads, _ = _g.head_outputs(net, ev.x_A, ev.x_B)
            pred = sum(heads) / len(heads)
            perf = _g.sample_performance(pred, ev.y, cfg.metric)
            eg = jnp.asarray(jnp.nan, self.dtype)
            w_pred = (sum(_g.head_weights(net)) / _g.n_heads(net)) if self.linear else None
        return dict(
            weights=w_pred, loss=lval, gen_error=eg, perf=perf, d_util=du, d_speed=d, M=M, mode=mode
        )

    def _batch(self, p, t, rm, k_batch):
        """(minibatch, replacement of the cross-modal inputs, running means) of step t."""
        objective, cfg = self.objective, self.cfg
        if self.is_stats or cfg.batch_size is None:
            batch = objective
        else:
            idx = jax.random.choice(k_batch, obj_size(objective), (cfg.batch_size,), replace=False)
            batch = jax.tree.map(lambda a: a[idx], objective)
        replace = None
        if not self.is_stats:
            _, bm = _g.head_outputs(eqx.combine(p, self.static), batch.x_A, batch.x_B)
            bm = jax.lax.stop_gradient(bm)
            if cfg.rebalance_mean == "running":
                n_seen = t.astype(jax.tree.leaves(rm)[0].dtype)  # running mean over t + 1 batches
                rm = jax.tree.map(lambda b, r: (b + r * n_seen) / (n_seen + 1), bm, rm)
                replace = rm
            else:
                replace = bm
        return batch, replace, rm

    def _next_mode(self, mode, count, d, t, k_rand):
        if self.cfg.algorithm == "balanced":
            return scheduler_update(
                mode, count, d, t, alpha=self.alpha, Q=self.Q, warmup=self.warmup
            )
        if self.cfg.algorithm == "random":
            pick = jax.random.randint(k_rand, (), 0, 3).astype(jnp.int32)
            return jnp.where(t < self.warmup, REGULAR, pick).astype(jnp.int32), count
        return jnp.asarray(REGULAR, jnp.int32), count

    def step(self, c):
        t, p, s, mode, count, M, d, rm, k = (
            c[n] for n in ("t", "p", "s", "mode", "count", "M", "d", "rm", "key")
        )
        k, k_batch, k_rand = jax.random.split(k, 3)
        batch, replace, rm = self._batch(p, t, rm, k_batch)
        _, g = self.grad_fn(p, mode, replace, batch)
        regular = mode == REGULAR
        M = M + jnp.where(regular, _g.mu(g, p), 0.0)
        d = jnp.where(regular, _g.conditional_speeds(M)[2], d)
        next_mode, count = self._next_mode(mode, count, d, t, k_rand)
        updates, s = self.opt.update(g, s, p, mode=mode)
        p = optax.apply_updates(p, updates)
        new = dict(c, t=t + 1, p=p, s=s, mode=next_mode, count=count, M=M, d=d, rm=rm, key=k)
        new["mode_counts"] = c["mode_counts"].at[mode].add(1)
        return self._count(c, new, p, t)

    def _count(self, c, new, p, t):
        """Exact per-step counters: first crossings t_A, t_B and the d_util phase counts."""
        if self.linear:
            net = eqx.combine(p, self.static)
            ws = _g.head_weights(net)
            w_pred = sum(ws) / len(ws)
            nA = jnp.linalg.norm(w_pred[..., : net.d_A])
            nB = jnp.linalg.norm(w_pred[..., net.d_A :])
            new["t_A"] = jnp.where((c["t_A"] < 0) & (nA >= self.thr_A), t + 1, c["t_A"])
            new["t_B"] = jnp.where((c["t_B"] < 0) & (nB >= self.thr_B), t + 1, c["t_B"])
        if self.track:
            _, du = stats_diag(eqx.combine(p, self.static), self.objective, self.cfg.metric)
            # Count only once the model has learned one modality (first crossing of either):
            # before that every prediction is ~0 and the rates are not meaningful.
            learned = (new["t_A"] >= 0) | (new["t_B"] >= 0)
            counting = (t + 1 <= self.cfg.count_window) & learned
            uni = counting & (du < self.cfg.unimodal_threshold)
            new["n_uni"] = c["n_uni"] + uni.astype(c["n_uni"].dtype)
            new["n_inv"] = c["n_inv"] + (counting & (du > 0)).astype(c["n_inv"].dtype)
        return new

    def block(self, carry, bounds):
        start, stop = bounds
        carry = jax.lax.fori_loop(start, stop, lambda _, c: self.step(c), carry)
        out = self.summary(carry["p"], carry["M"], carry["d"], carry["mode"])
        out["steps"] = carry["t"]
        return carry, out

    def carry0(self, params, key):
        i32 = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
        return dict(
            t=i32(0),
            p=params,
            s=self.opt_state0,
            mode=i32(REGULAR),
            count=i32(0),
            M=jnp.zeros((4,), self.dtype),
            d=jnp.asarray(jnp.nan, self.dtype),
            rm=self.rm0,
            key=key,
            mode_counts=jnp.zeros((3,), jnp.int32),
            t_A=i32(-1),
            t_B=i32(-1),
            n_uni=i32(0 if self.track else -1),
            n_inv=i32(0 if self.track else -1),
        )


def _train_one(
    params, static, objective, eval_data, lr, alpha, Q, warmup, key, save_steps, cfg: TrainCfg
):
    loop = _Loop(params, static, objective, eval_data, lr, (alpha, Q, warmup), cfg)
    carry0 = loop.carry0(params, key)
    first = loop.summary(params, carry0["M"], carry0["d"], carry0["mode"])
    first["steps"] = carry0["t"]
    carry, outs = jax.lax.scan(loop.block, carry0, (save_steps[:-1], save_steps[1:]))
    saved = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, outs)
    return GreedyRun(
        **saved,  # the summary's keys are GreedyRun's field names
        lr=jnp.asarray(lr, loop.dtype),
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
    key: PRNGKeyArray | Key[Array, " n"] | None = None,
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
      (the scheduler of Wu et al. 2022) or ``"random"`` (their random re-balancing variant);
      docs/theory.md §6.
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
    args = prepare_train(
        net, objective, lr=lr, n_steps=n_steps, algorithm=algorithm, alpha=alpha, Q=Q,
        warmup=warmup, variant=variant, optimizer=optimizer, loss=loss, metric=metric,
        eval_data=eval_data, n_save=n_save, save=save, key=key, batch_size=batch_size,
        rebalance_mean=rebalance_mean, count_window=count_window,
        unimodal_threshold=unimodal_threshold,
    )  # fmt: skip
    params, static = eqx.partition(net, eqx.is_array)
    return _train_jit(params, static, *args)
