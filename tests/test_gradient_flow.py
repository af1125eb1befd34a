import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import lowerings

import multimodal_dln as mdln
from multimodal_dln import theory

# (rho, ratio) pairs spanning weak/strong correlation, both signs, and Sigma_yxB < 0 (-0.9, 3).
PAIRS = [(0.0, 2.0), (0.5, 2.0), (-0.5, 2.0), (0.9, 1.5), (-0.9, 3.0), (0.45, 3.0)]
SEEDS = 2


def _toy_batch(fusion_layer, init="random", u0=1e-12, width=16, depth=2):
    rho = jnp.array([p[0] for p in PAIRS for _ in range(SEEDS)])
    ratio = jnp.array([p[1] for p in PAIRS for _ in range(SEEDS)])
    stats = jax.vmap(mdln.Statistics.toy)(rho, ratio)
    keys = jax.random.split(jax.random.key(42), rho.shape[0])
    nets = eqx.filter_vmap(
        lambda k, s: mdln.FusionDLN.init(
            k,
            depth=depth,
            fusion_layer=fusion_layer,
            width=width,
            d_A=1,
            d_B=1,
            init_scale=u0,
            init=init,
            align_to=s,
        )
    )(keys, stats)
    return rho, ratio, stats, nets


@pytest.fixture(scope="module")
def late_fusion_run():
    rho, ratio, stats, nets = _toy_batch(fusion_layer=2)
    traj = mdln.gradient_flow(nets, stats)
    return rho, ratio, stats, traj, mdln.measure(traj, stats)


# The single-network tests share compiled programs: one save count (so one compiled `measure`),
# and test_failures_are_flagged_not_silent solves with a given horizon on the network shape of
# test_dataset_objective_equals_its_statistics_for_linear_nets (one compiled solve).
N_SAVE = 256


def _net(u0, depth=2, width=8, key=0):
    return mdln.FusionDLN.init(
        jax.random.key(key), depth=depth, fusion_layer=2, width=width, d_A=1, d_B=1, init_scale=u0
    )


def test_late_fusion_time_ratio_matches_theory(late_fusion_run):
    """Two-layer late fusion, u0 = 1e-12 (float64): t_B/t_A within 3 % of 1 + (r^2-1)/(1-rho^2)."""
    rho, ratio, stats, traj, m = late_fusion_run
    assert bool(jnp.all(m.success)), traj.failure_reasons()
    expected = theory.time_ratio_toy(rho, ratio)
    rel = np.abs(np.asarray(m.time_ratio / expected) - 1)
    assert rel.max() < 0.03, (np.asarray(m.time_ratio), np.asarray(expected))


def test_late_fusion_misattribution_matches_theory(late_fusion_run):
    """Misattribution W_A(t_uni) - W_A(inf) within 2 % of rho / ratio (absolute 2e-3 at rho = 0)."""
    rho, ratio, stats, traj, m = late_fusion_run
    mis = np.asarray(m.misattribution[:, 0, 0])
    expected = np.asarray(theory.misattribution_toy(rho, ratio))
    tol = np.maximum(0.02 * np.abs(expected), 2e-3)
    assert np.all(np.abs(mis - expected) <= tol), (mis, expected)


def test_late_fusion_plateau_loss(late_fusion_run):
    """The loss in the middle of the unimodal phase sits at L(M_A) (within 1 %)."""
    rho, ratio, stats, traj, m = late_fusion_run
    np.testing.assert_allclose(m.plateau_loss, theory.plateau_loss(stats), rtol=0.01)


def test_early_fusion_has_no_unimodal_phase():
    """Early fusion: both modalities rise together (ratio 1 to 1.2 with the half-rise protocol,
    docs/theory.md §2).

    Exception found here: with Sigma_yxB < 0 (rho = -0.9, ratio 3) the network first learns
    along Sigma_yx, where B has the wrong sign, and must rotate to the teacher afterwards, so
    ||W_B|| reaches half its final value much later (ratio ~2.3). "No unimodal phase" holds, a
    B-delay does not."""
    rho, ratio, stats, nets = _toy_batch(fusion_layer=1)
    m = mdln.measure(mdln.gradient_flow(nets, stats), stats)
    assert bool(jnp.all(m.success))
    positive_drive = np.asarray(stats.sigma_yxB[:, 0, 0]) > -1e-9  # rho = -0.5, ratio 2: exactly 0
    r = np.asarray(m.time_ratio)
    assert np.all((r[positive_drive] > 0.95) & (r[positive_drive] < 1.2)), r
    assert np.all(r[~positive_drive] > 1.5), r


def test_aligned_init_matches_random_init_for_two_layers():
    rho, ratio, stats, nets = _toy_batch(fusion_layer=2, init="aligned")
    m = mdln.measure(mdln.gradient_flow(nets, stats), stats)
    assert bool(jnp.all(m.success))
    rel = np.abs(np.asarray(m.time_ratio / theory.time_ratio_toy(rho, ratio)) - 1)
    assert rel.max() < 0.03


def test_batch_of_1024_solves_without_recompiling():
    """1024 initializations x 4 statistics in one jitted call; new rho/ratio/u0 values reuse it."""

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(keys, rho, ratio, u0):
        stats = jax.vmap(mdln.Statistics.toy)(rho, ratio)
        nets = eqx.filter_vmap(
            lambda k, u: mdln.FusionDLN.init(
                k, depth=2, fusion_layer=2, width=4, d_A=1, d_B=1, init_scale=u
            )
        )(keys, u0)
        traj = mdln.gradient_flow(nets, stats, n_save=256)
        return mdln.measure(traj, stats)

    n = 1024
    keys = jax.random.split(jax.random.key(0), n)
    grid = lambda vals: jnp.repeat(jnp.asarray(vals), n // 4)  # noqa: E731
    m1 = run(keys, grid([0.0, 0.3, -0.3, 0.6]), grid([2.0, 2.0, 1.5, 3.0]), jnp.full(n, 1e-6))
    m2 = run(keys, grid([0.1, 0.2, -0.2, 0.5]), grid([1.5, 2.5, 2.0, 2.0]), jnp.full(n, 1e-5))
    assert m1.time_ratio.shape == (n,) and bool(jnp.all(m1.success)) and bool(jnp.all(m2.success))
    assert not np.allclose(m1.time_ratio, m2.time_ratio)


def test_same_seed_identical_results(late_fusion_run):
    """Building the batch from the same seeds and solving again gives the fixture's run bit for
    bit (the same shapes: the compiled solve is reused)."""
    a = late_fusion_run[3]
    _, _, stats, nets = _toy_batch(fusion_layer=2)
    b = mdln.gradient_flow(nets, stats)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.t_end, b.t_end)


def test_failures_are_flagged_not_silent():
    stats = mdln.Statistics.toy(0.0, 2.0)
    net = _net(u0=1e-6, depth=3, width=4)
    short = mdln.gradient_flow(net, stats, t_max=0.5, n_save=N_SAVE)
    assert not bool(short.success) and bool(short.solver_ok) and not bool(short.converged)
    assert "t_max" in short.failure_reasons()[0]
    starved = mdln.gradient_flow(net, stats, max_steps=5, n_save=N_SAVE)
    assert not bool(starved.solver_ok) and not bool(starved.success)
    m = mdln.measure(starved, stats)
    assert not bool(m.success)


def test_dataset_objective_equals_its_statistics_for_linear_nets(key):
    data = mdln.sample(key, mdln.Statistics.toy(0.3, 2.0, noise=0.2), 256)
    net = _net(u0=0.3, depth=3, width=4, key=1)
    t_max = 20.0
    a = mdln.gradient_flow(net, data, t_max=t_max, n_save=N_SAVE)
    b = mdln.gradient_flow(net, data.statistics(), t_max=t_max, n_save=N_SAVE)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6, atol=1e-9)


def test_relu_network_trains_on_samples(key):
    data = mdln.sample(key, mdln.Statistics.toy(0.0, 2.0), 256)
    net = mdln.FusionDLN.init(
        jax.random.key(1),
        depth=2,
        fusion_layer=2,
        width=16,
        d_A=1,
        d_B=1,
        init_scale=0.1,
        init="entrywise",
        activation="relu",
    )
    traj = mdln.gradient_flow(net, data, n_save=64, converge_rtol=1e-4)
    assert bool(traj.solver_ok)
    assert float(traj.loss[-1]) < 1e-3 * float(traj.loss[0])
    # The linear readout of the trained ReLU net recovers the linear teacher (1, 1).
    np.testing.assert_allclose(traj.weights[-1], [[1.0, 1.0]], atol=0.02)


def test_float32_option_runs_and_agrees():
    stats = mdln.Statistics.toy(0.5, 2.0)
    net = _net(u0=1e-3)
    t64 = mdln.measure(mdln.gradient_flow(net, stats, n_save=N_SAVE), stats)
    tr32 = mdln.gradient_flow(net, stats, n_save=N_SAVE, dtype=jnp.float32, rtol=1e-5)
    assert tr32.weights.dtype == jnp.float32
    t32 = mdln.measure(tr32, stats)
    np.testing.assert_allclose(float(t32.time_ratio), float(t64.time_ratio), rtol=0.01)


def test_buckets_by_predicted_duration_preserve_results_and_order(late_fusion_run):
    """Solving in duration-sorted buckets returns every member in its original place, with the
    same steps and the same trajectory (to reassociation round-off of a smaller batch) as the
    one-batch solve of the fixture."""
    rho, ratio, stats, one, _ = late_fusion_run
    _, _, _, nets = _toy_batch(fusion_layer=2)
    cost = theory.time_ratio_toy(rho, ratio)
    for kwargs in (dict(buckets=4, cost=cost), dict(buckets=5)):  # 12 members: 4x3, and 5x3 padded
        b = mdln.gradient_flow(nets, stats, **kwargs)
        np.testing.assert_array_equal(b.num_steps, one.num_steps)
        np.testing.assert_allclose(b.weights, one.weights, rtol=1e-8, atol=1e-20)
    with pytest.raises(ValueError, match="cost must have one entry per member"):
        mdln.gradient_flow(nets, stats, buckets=2, cost=jnp.ones(3))


def test_estimated_and_given_horizons_share_one_compiled_solve():
    """The horizon is a traced argument (NaN: estimate it) of one dtype either way: a solve with
    a given t_max after one with the estimated horizon traces no new solve program (a
    weak-typed NaN used to compile the start-values program again). Counted as lowerings
    during the second call, which the persistent cache does not hide. (No cache clearing:
    that would make every later test of this worker trace its programs again.)"""
    stats = jax.vmap(mdln.Statistics.toy)(jnp.array([0.0, 0.5]), jnp.array([2.0, 2.0]))
    nets = eqx.filter_vmap(lambda k: mdln.FusionDLN.init(
        k, depth=2, fusion_layer=2, width=3, d_A=1, d_B=1, init_scale=1e-3))(
        jax.random.split(jax.random.key(0), 2))  # fmt: skip
    est = mdln.gradient_flow(nets, stats, horizon_cap=1.0)
    with lowerings("jit(_call_jit)") as lowered:
        given = mdln.gradient_flow(nets, stats, t_max=jnp.full(2, 1e4))
    assert not lowered, "a given t_max compiled another solve program"
    assert np.all(np.asarray(est.status) == mdln.Status.OK)
    assert np.all(np.asarray(given.status) == mdln.Status.OK)
