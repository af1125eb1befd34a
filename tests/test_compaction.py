"""Compaction (`multimodal_dln._compaction`): chunked solves that drop finished members.

- the chained solve is the one-shot solve: same steps, saves, end times and statuses, bit for
  bit (solver, controller and step-size state forwarded between chunks), including members
  that run out of their step budget and continuation rounds, and the measured time ratios
  are identical;
- the pool schedule: every member is advanced until done, never twice in one chunk, and the
  member-steps performed are exactly `compacted_work`'s count (the cost model the benchmark
  uses for the useful-work fraction);
- a bad combination of options is a one-line error.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln
from multimodal_dln._compaction import compacted_work, run_compacted


def _batch():
    """Six two-layer late-fusion members of very different durations (u0 1e-9 ... 1e-3)."""
    rho = jnp.asarray([0.0, 0.5, -0.5, 0.3, 0.0, 0.6])
    ratio = jnp.asarray([2.0, 1.5, 3.0, 2.5, 1.2, 2.0])
    u0 = jnp.asarray([1e-9, 1e-3, 1e-6, 1e-4, 1e-8, 1e-5])
    stats = jax.vmap(mdln.Statistics.toy)(rho, ratio)

    def make(k, u):
        return mdln.FusionDLN.init(
            k, depth=2, fusion_layer=2, width=4, d_A=1, d_B=1, init_scale=u, init="entrywise"
        )

    nets = eqx.filter_vmap(make)(jax.random.split(jax.random.key(3), 6), u0)
    return nets, stats


def _assert_identical(a, b):
    for field in ("weights", "weights_dot", "loss", "t_end", "num_steps", "status", "ts"):
        np.testing.assert_array_equal(
            np.asarray(getattr(a, field)), np.asarray(getattr(b, field)), err_msg=field
        )
    np.testing.assert_array_equal(
        np.asarray(jax.flatten_util.ravel_pytree(eqx.filter(a.final, eqx.is_array))[0]),
        np.asarray(jax.flatten_util.ravel_pytree(eqx.filter(b.final, eqx.is_array))[0]),
    )


@pytest.mark.slow
def test_compacted_solve_equals_one_shot():
    nets, stats = _batch()
    # A step budget (a multiple of chunk_steps) that stops the longest members: STEP_BUDGET.
    kw = dict(max_steps=256, shard=False)
    one = mdln.gradient_flow(nets, stats, **kw)
    packed = mdln.gradient_flow(nets, stats, chunk_steps=16, pool_size=4, **kw)
    _assert_identical(one, packed)
    steps, status = np.asarray(one.num_steps), np.asarray(one.status)
    assert (status == mdln.Status.STEP_BUDGET).sum() >= 2
    assert steps.max() > 1.5 * steps.min()  # heterogeneous: compaction has work to save
    m1, m2 = mdln.measure(one, stats), mdln.measure(packed, stats)
    np.testing.assert_array_equal(np.asarray(m1.time_ratio), np.asarray(m2.time_ratio))
    assert np.asarray(m1.success).sum() >= 3, [mdln.Status(int(c)).name for c in m1.status]


@pytest.mark.slow
def test_compacted_continuation_rounds_equal_one_shot():
    """Continuation rounds (members not converged by their estimated horizon) are compacted
    too, with the same result. Three-layer late fusion, aligned rank-one starts along random
    directions: member 1's start has a negative product along its drive, so it is attracted
    to zero and never converges (a real property of odd-depth rank-one flows, flagged
    NOT_CONVERGED) and runs every continuation round up to the horizon cap."""
    rho = jnp.asarray([0.0, 0.5, -0.5, 0.3])
    stats = jax.vmap(mdln.Statistics.toy)(rho, jnp.asarray([2.0, 1.5, 3.0, 2.5]))
    keys, rows = jax.random.split(jax.random.key(3), 6)[:4], [1e-4, 1.0, 1e-3, 1.0]
    nets = jax.tree.map(
        lambda *xs: jnp.stack(xs),
        *(
            mdln.FusionDLN.init(
                k, depth=3, fusion_layer=3, width=4, d_A=1, d_B=1, init_scale=1e-2,
                init="aligned", layer_scales=(1.0, r, 1.0),
            )
            for k, r in zip(keys, rows, strict=True)
        ),
    )  # fmt: skip
    one = mdln.gradient_flow(nets, stats, shard=False)
    packed = mdln.gradient_flow(nets, stats, shard=False, chunk_steps=16, pool_size=2)
    _assert_identical(one, packed)
    horizon = eqx.filter_vmap(mdln._training.default_horizon)(nets, stats)
    continued = np.asarray(one.t_end) > np.asarray(horizon)
    assert continued[1] and not continued[[0, 2, 3]].any(), (one.t_end, horizon)
    status = np.asarray(one.status)
    assert status[1] == mdln.Status.NOT_CONVERGED and (status[[0, 2, 3]] == 0).all(), status


def test_pool_schedule_matches_the_cost_model():
    rng = np.random.default_rng(0)
    steps = rng.integers(1, 300, size=37)
    chunk, pool = 16, 8
    log = []

    def advance(sub, state):
        (slot,) = sub
        left = state["left"]
        taken = jnp.minimum(left, chunk)
        real = np.asarray(slot)[: len(set(np.asarray(slot).tolist()))]
        log.append((int(left.shape[0]), int(taken.max()), real))
        return {"left": left - taken}

    state = {"left": jnp.asarray(steps)}
    end = run_compacted(
        advance,
        lambda s: s["left"] > 0,
        (jnp.arange(steps.size),),
        (0,),
        state,
        steps.size,
        pool,
    )
    assert np.all(np.asarray(end["left"]) == 0)
    assert all(len(set(r.tolist())) == len(r) for _, _, r in log)  # no member twice
    assert sum(size * most for size, most, _ in log) == compacted_work(steps, chunk, pool)
    assert {size for size, _, _ in log} <= {8, 4, 2, 1} and log[0][0] == pool
    useful = steps.sum() / compacted_work(steps, chunk, pool)
    one_shot = steps.sum() / (steps.size * steps.max())
    assert useful > 0.78 and one_shot < 0.55  # measured 0.80 and 0.50


def test_compaction_options_are_checked():
    nets, stats = _batch()
    with pytest.raises(ValueError, match="pool_size needs chunk_steps"):
        mdln.gradient_flow(nets, stats, pool_size=4)
    with pytest.raises(ValueError, match="chunk_steps replaces buckets"):
        mdln.gradient_flow(nets, stats, chunk_steps=16, buckets=2)
    with pytest.raises(ValueError, match="chunk_steps"):
        mdln.gradient_flow(nets, stats, chunk_steps=0)
