"""Argument checks and batch resolution of the discrete trainer `train` (with its save grid)
and of the hybrid flow `balanced_flow`."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from .._dataset import Dataset
from .._network import FusionDLN
from .._statistics import Statistics
from .._two_head import TwoHeadFusionNet
from .._validation import check, check_choice, check_positive, check_positive_int
from ._common import (
    check_alpha,
    net_batch_ndim,
    net_batch_size,
    obj_batch_ndim,
    obj_dims,
    obj_size,
)
from ._diagnostics import VARIANTS, check_net
from ._schedule import ALGORITHMS, LOSSES


class TrainCfg(eqx.Module):
    algorithm: str = eqx.field(static=True)
    variant: str = eqx.field(static=True)
    make_optimizer: Callable = eqx.field(static=True)
    loss: str = eqx.field(static=True)
    metric: str = eqx.field(static=True)
    batch_size: int | None = eqx.field(static=True)
    rebalance_mean: str = eqx.field(static=True)
    count_window: Array  # traced: no recompile per value
    unimodal_threshold: Array


def _check_options(net, objective, algorithm, variant, loss, rebalance_mean, metric) -> str:
    """Types and string options of `train`; returns the metric (default resolved)."""
    check_net(net)
    if not isinstance(objective, (Statistics, Dataset)):
        raise TypeError(
            f"objective must be Statistics or a Dataset; got {type(objective).__name__}."
        )
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("variant", variant, VARIANTS)
    check_choice("loss", loss, LOSSES)
    check_choice("rebalance_mean", rebalance_mean, ("running", "batch"))
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
    return check_choice("metric", metric, allowed)


def _check_sizes(net, objective, n_steps, n_save, batch_size) -> None:
    check_positive_int("n_steps", n_steps)
    check_positive_int("n_save", n_save)
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
        if not isinstance(objective, Statistics) and batch_size > objective.x_A.shape[-2]:
            raise ValueError(
                f"batch_size must be <= the number of training samples "
                f"{objective.x_A.shape[-2]}; got {batch_size}."
            )
    if obj_dims(objective) != (net.d_A, net.d_B, net.d_out):
        raise ValueError(
            f"network dims (d_A, d_B, d_out) = {(net.d_A, net.d_B, net.d_out)} do not match "
            f"the data's {obj_dims(objective)}."
        )


def _check_hyper(lr, alpha, Q, warmup):
    """lr > 0, α >= 0, Q an integer >= 1, warm-up an integer >= 0 (arrays; int32 for Q and
    the warm-up)."""
    lr = check_positive("lr (learning rate)", jnp.asarray(lr, dtype=float))
    alpha = check_alpha(alpha)
    Q = jnp.asarray(Q)
    Q = check(
        Q,
        (Q < 1) | (Q != jnp.round(Q)),
        f"Q (re-balancing window) must be an integer >= 1; got {Q}.",
    )
    warmup = jnp.asarray(warmup)
    warmup = check(
        warmup,
        (warmup < 0) | (warmup != jnp.round(warmup)),
        f"warmup must be an integer >= 0; got {warmup}.",
    )
    return lr, alpha, Q.astype(jnp.int32), warmup.astype(jnp.int32)


def _resolve_batch(net, objective, eval_data, hyper: dict, key):
    """The common batch size of every batched input (None: one member), the key(s) (split per
    member when batched) and the batch ranks of net, objective and eval data."""
    nb, ob = net_batch_ndim(net), obj_batch_ndim(objective)
    eb = 0 if eval_data is None else obj_batch_ndim(eval_data)
    if nb > 1 or ob > 1 or eb > 1:
        raise ValueError(
            "networks, objectives and eval data may carry at most one leading batch axis."
        )
    sizes = {}
    if nb:
        sizes["net"] = net_batch_size(net)
    if ob:
        sizes["objective"] = obj_size(objective)
    if eb:
        sizes["eval_data"] = obj_size(eval_data)
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
    return batch, key, (nb, ob, eb)


def _save_steps(n_steps: int, n_save: int, save: str):
    """Step 0 and about `n_save` save points up to `n_steps` (linear or log-spaced)."""
    check_choice("save", save, ("linear", "log"))
    if save == "log":
        grid = np.unique(
            np.round(np.geomspace(1, int(n_steps), max(int(n_save), 2))).astype(np.int64)
        )
    else:
        every = max(1, -(-int(n_steps) // int(n_save)))
        grid = np.unique(np.minimum(np.arange(every, int(n_steps) + every, every), int(n_steps)))
    return jnp.asarray(np.concatenate([[0], grid]), dtype=jnp.int32)


def prepare_train(
    net: FusionDLN | TwoHeadFusionNet, objective, *, lr, n_steps, algorithm, alpha, Q, warmup,
    variant, optimizer, loss, metric, eval_data, n_save, save, key, batch_size, rebalance_mean,
    count_window, unimodal_threshold,
):  # fmt: skip
    """Check every argument of `train` and return the positional arguments of its jitted
    loop after `(params, static)`: objective, eval data, lr, α, Q, warm-up, key(s), save
    steps, the config and the vmap axes (None for one member)."""
    metric = _check_options(net, objective, algorithm, variant, loss, rebalance_mean, metric)
    _check_sizes(net, objective, n_steps, n_save, batch_size)
    lr, alpha, Q, warmup = _check_hyper(lr, alpha, Q, warmup)
    hyper = {"lr": lr, "alpha": alpha, "Q": Q, "warmup": warmup}
    batch, key, (nb, ob, eb) = _resolve_batch(net, objective, eval_data, hyper, key)
    if eval_data is None and not isinstance(objective, Statistics):
        eval_data, eb = objective, ob
    save_steps = _save_steps(n_steps, n_save, save)
    cfg = TrainCfg(
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
    if batch is None:
        axes = None
    else:
        ax = lambda n: 0 if n else None  # noqa: E731
        axes = (
            ax(nb),
            ax(ob),
            ax(eb) if eval_data is not None else None,
            *(ax(h.ndim) for h in (lr, alpha, Q, warmup)),
            0,
        )
    return objective, eval_data, lr, alpha, Q, warmup, key, save_steps, cfg, axes


def check_flow_inputs(net, stats, algorithm, metric) -> None:
    """Types and string options of `balanced_flow`."""
    check_net(net)
    if not isinstance(stats, Statistics):
        raise TypeError(f"stats must be Statistics; got {type(stats).__name__}.")
    if not net.is_linear:
        raise ValueError(
            f"balanced_flow needs a linear network; got activation={net.activation!r}."
        )
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("metric", metric, ("r2", "sign_accuracy"))
    if obj_dims(stats) != (net.d_A, net.d_B, net.d_out):
        raise ValueError("network and statistics dimensions differ.")


def flow_axes(net, stats, hyper):
    """vmap axes of (params, stats, lr, α, Q, warm-up time); None for one member."""
    nb, ob = net_batch_ndim(net), obj_batch_ndim(stats)
    sizes = [s for s in (net_batch_size(net) if nb else None,
                         stats.sigma_xx.shape[0] if ob else None) if s is not None]  # fmt: skip
    sizes += [h.shape[0] for h in hyper if h.ndim == 1]
    if len(set(sizes)) > 1:
        raise ValueError(f"batch sizes differ: {sizes}.")
    if not sizes:
        return None
    ax = lambda n: 0 if n else None  # noqa: E731
    return (ax(nb), ax(ob)) + tuple(ax(h.ndim) for h in hyper)
