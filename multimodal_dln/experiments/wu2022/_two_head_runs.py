"""What the two-head ReLU experiments on scikit-learn's digits share (`digits`, `colored`):
the networks, per-seed data stacked along a batch axis, and one trainer per algorithm
(Wu et al. 2022; docs/greedy.md).

- `two_head_nets(seeds, width, init_scale, d_A, d_B)`: depth 3 (d -> width -> width -> 10 per
  branch), cross-connections at layers 2 and 3, entrywise init N(0, init_scale^2); one network
  per seed, stacked.
- `stack_seeds(views)`: the per-seed (train, test) `Dataset`s as two batched ones.
- `trainer(keys, ...)`: ``fit(nets, train, test, algorithm)``, `greedy.train` with minibatch SGD
  on the sum of the heads' cross-entropies (the authors' blend loss); "vanilla" is the balanced
  loop that never triggers (alpha = inf), "balanced" the paper's algorithm, "random" random
  re-balancing.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ... import TwoHeadFusionNet, greedy

__all__ = ["algorithm_kw", "stack_seeds", "trainer", "two_head_nets"]


def two_head_nets(seeds, width, init_scale, d_A, d_B, d_out=10):
    """One network per seed (module docstring), stacked. Built one by one, the same values as
    vmapping the init over the keys, which compiles a batched random generator per matrix shape
    (measured, 2 seeds, fresh process: 10-13 s of CPU against 4 s)."""
    nets = [
        TwoHeadFusionNet.init(
            k, depth=3, fusion_layers=(2, 3), width=width, d_A=d_A, d_B=d_B, d_out=d_out,
            init_scale=init_scale, init="entrywise", activation="relu",
        )  # fmt: skip
        for k in jax.random.split(jax.random.key(1234), seeds)
    ]
    return jax.tree.map(lambda *a: jnp.stack(a), *nets)


def stack_seeds(views):
    """[(train, test) per seed] -> (train, test) with a leading seed axis."""
    tr = jax.tree.map(lambda *a: jnp.stack(a), *[v[0] for v in views])
    te = jax.tree.map(lambda *a: jnp.stack(a), *[v[1] for v in views])
    return tr, te


def algorithm_kw(alg, alpha, Q) -> dict:
    """`greedy.train` keywords of "vanilla", "balanced" or "random"."""
    if alg == "random":
        return dict(algorithm="random")
    return dict(algorithm="balanced", alpha=(math.inf if alg == "vanilla" else alpha), Q=Q)


def trainer(keys, *, lr, n_steps, warmup, batch_size, Q, alpha, n_save):
    """``fit(nets, train, test, alg) -> GreedyRun`` with the experiment's settings (module
    docstring); `keys` one minibatch key per seed."""

    def fit(nets, train, test, alg):
        return greedy.train(
            nets, train, lr=lr, n_steps=n_steps, warmup=warmup, loss="cross_entropy",
            eval_data=test, batch_size=batch_size, key=keys, n_save=n_save,
            **algorithm_kw(alg, alpha, Q),
        )  # fmt: skip

    return fit
