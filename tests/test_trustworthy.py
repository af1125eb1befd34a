"""No wrong phase time is reported as a success; every failure names its member and cause.

Each test reproduces one observed fault (a plausible number with success=True, a batch lost
to one member, a wrong remedy) and asserts the new behaviour.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln
from multimodal_dln import Status, theory
from multimodal_dln._continuation import extended_grid


def _net(depth=2, fusion_layer=2, width=8, u0=1e-6, init="random", key=0, **kw):
    return mdln.FusionDLN.init(
        jax.random.key(key) if isinstance(key, int) else key,
        depth=depth,
        fusion_layer=fusion_layer,
        width=width,
        d_A=1,
        d_B=1,
        init_scale=u0,
        init=init,
        **kw,
    )


def _nets(n, **kw):
    return eqx.filter_vmap(lambda k: _net(key=k, **kw))(jax.random.split(jax.random.key(1), n))


TOY = mdln.Statistics.toy(0.5, 2.0)


def test_save_grid_that_misses_the_crossing_is_flagged():
    """Observed: t_max = 1e6 gave ratio 2.82 and t_max = 1e7 ratio 0.856 (t_A = 58 > t_end =
    18), both success=True; the right value (t_max=None) is 4.91."""
    net = _net()
    good = mdln.measure(mdln.gradient_flow(net, TOY), TOY)
    assert int(good.status) == Status.OK
    assert abs(float(good.time_ratio) / float(theory.time_ratio_toy(0.5, 2.0)) - 1) < 0.03
    for t_max, code in ((1e6, Status.CROSSING_UNRESOLVED), (1e7, Status.NO_CROSSING)):
        m = mdln.measure(mdln.gradient_flow(net, TOY, t_max=t_max), TOY)
        assert int(m.status) == code, (t_max, mdln.describe_status(m.status))
        assert np.isnan(float(m.time_ratio)) and np.isnan(float(m.t_A))
        assert np.all(np.isnan(np.asarray(m.misattribution))) and np.isnan(float(m.plateau_loss))
    # Finer saves resolve the same long horizon: the measurement is right again.
    fine = mdln.measure(
        mdln.gradient_flow(net, TOY, t_max=1e6, t_min_fraction=1e-8, n_save=2048), TOY
    )
    assert int(fine.status) == Status.OK
    np.testing.assert_allclose(float(fine.time_ratio), float(good.time_ratio), rtol=1e-3)


@pytest.mark.wrong_types
@pytest.mark.parametrize("bad", [2.0, 0.0, 1.0, -1e-3, "1e-5", True])
def test_t_min_fraction_is_validated(bad):
    with pytest.raises(
        ValueError, match=r"t_min_fraction must be a number in the open interval \(0, 1\)"
    ):
        mdln.gradient_flow(_net(), TOY, t_min_fraction=bad)


@pytest.mark.wrong_types
@pytest.mark.parametrize(
    "kw,pattern",
    [
        (dict(max_steps=0), r"max_steps must be a positive integer"),
        (dict(max_steps=-1), r"max_steps must be a positive integer"),
        (dict(max_steps=10.5), r"max_steps must be a positive integer"),
        (dict(n_save=2), r"n_save must be an integer >= 3"),
        (dict(rtol=2.0), r"rtol must be a number in the open interval"),
        (dict(converge_rtol=0.0), r"converge_rtol must be a number in the open interval"),
        (dict(atol=-1.0), r"atol must be a finite number > 0"),
        (dict(horizon_cap=0.5), r"horizon_cap must be a finite number >= 1"),
        (dict(solver="tsit5"), r"solver must be a diffrax solver"),
        (dict(dtype=jnp.float16), r"dtype must be float32 or float64"),
        (dict(dtype=jnp.int32), r"dtype must be float32 or float64"),
    ],
)
def test_solver_options_are_validated(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        mdln.gradient_flow(_net(), TOY, **kw)


def test_near_singular_correlation_is_not_reported_as_success():
    """Observed: rho = 0.99999999, ratio 2 printed status ok and a ratio near 1 (theory 1.5e8)."""
    stats = mdln.Statistics.toy(0.99999999, 2.0)
    m = mdln.measure(mdln.gradient_flow(_net(), stats), stats)
    assert int(m.status) != Status.OK and np.isnan(float(m.time_ratio))


def test_measure_checks_the_statistics():
    traj = mdln.gradient_flow(_net(), TOY)  # the shapes of the tests above: no new compile
    other = mdln.Statistics(jnp.eye(3), jnp.ones((1, 3)), 4 * jnp.ones((1, 1)), d_A=1)
    with pytest.raises(
        ValueError,
        match=r"stats \(d_A, d, d_out\) = \(1, 3, 1\) do not match the trajectory's \(1, 2, 1\)",
    ):
        mdln.measure(traj, other)
    not_psd = mdln.Statistics(
        jnp.array([[1.0, 2.0], [2.0, 1.0]]), jnp.ones((1, 2)), 9 * jnp.ones((1, 1)), d_A=1
    )
    with pytest.raises(
        ValueError,
        match=r"sigma_xx \(input covariance\) must be symmetric and positive semi-definite",
    ):
        mdln.measure(traj, not_psd)


def test_modality_never_learned_is_flagged():
    """Observed: a teacher with w_B = 0 (B never learned) at rho 0.5 gave success with t_B < t_A."""
    stats = mdln.Statistics.toy(0.5, 2.0, w_B=0.0)
    m = mdln.measure(mdln.gradient_flow(_net(), stats), stats)
    assert int(m.status) == Status.MODALITY_NOT_LEARNED and np.isnan(float(m.t_B))
    assert "not learned" in m.failure_reasons()[0]


def test_b_stronger_than_a_is_refused_not_mismeasured():
    """The definitions assume A first; with B the stronger modality the member is flagged."""
    stats = mdln.Statistics.toy(0.0, 0.5)
    m = mdln.measure(mdln.gradient_flow(_net(), stats), stats)
    assert int(m.status) == Status.ORDER_REVERSED and np.isnan(float(m.time_ratio))


@pytest.mark.slow
def test_unconverged_members_continue_past_the_estimated_horizon():
    """Observed: depth 4, L_f = 4, rho = -0.5, random init 0.1 (width 100): at the default
    horizon the members had not converged and carried plausible ratios. Now they are NaN when
    the horizon is capped at the estimate, and by default the solve continues from the saved
    state until they converge, and the continued run equals a run given the final horizon up
    front. One member (a batch of one): the run time of this width-100 solve grows with the
    batch, and the continuation treats each member on its own."""
    stats = mdln.Statistics.toy(-0.5, 2.0)
    nets = _nets(1, depth=4, fusion_layer=4, width=100, u0=0.1)
    short = mdln.measure(mdln.gradient_flow(nets, stats, horizon_cap=1), stats)
    assert np.all(np.asarray(short.status) == Status.NOT_CONVERGED), short.failure_reasons()
    assert np.all(np.isnan(np.asarray(short.time_ratio)))
    traj = mdln.gradient_flow(nets, stats)
    auto = mdln.measure(traj, stats)
    assert np.all(np.asarray(auto.status) == Status.OK), auto.failure_reasons()
    # One solve given the continued horizon up front saves on the same grid: same phase times
    # to the solver tolerance (the continuation restarts the step-size controller at the old
    # horizon, nothing else differs).
    one_shot = mdln.gradient_flow(nets, stats, t_max=traj.ts[:, -1], horizon_cap=1)
    np.testing.assert_allclose(
        np.asarray(one_shot.ts)[:, :-8], np.asarray(traj.ts)[:, :-8], rtol=1e-12
    )
    ref = mdln.measure(one_shot, stats)
    assert np.all(np.asarray(ref.success))
    np.testing.assert_allclose(auto.t_A, ref.t_A, rtol=1e-5)
    np.testing.assert_allclose(auto.t_B, ref.t_B, rtol=1e-5)


def test_extended_grid_carries_the_earlier_saves_over():
    """Continuing a run shifts the log save grid: the overlap is bit-identical (so earlier saves
    are reused, not re-interpolated) and the new points continue the same progression."""
    ts = mdln.save_grid(30.0, 128, 1e-5)
    grid = np.asarray(extended_grid(ts, 10, 1e-5))
    np.testing.assert_array_equal(grid[1:-10], np.asarray(ts)[11:])
    ratios = grid[2:] / grid[1:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    assert grid[0] == 0.0 and grid[-1] > float(ts[-1])


def test_gd_divergence_gives_nan_phase_times_and_the_lr_remedy():
    """Observed: --lr 5 exited 0 with t_B/t_A 1.099 and misattribution -1.47e26; --lr 100 said
    'did not converge before t_max (raise t_max)'."""
    nets = _nets(3, width=8, u0=1e-6)  # lr per member, as in the tests below: one compile
    for lr in (5.0, 100.0):
        traj = mdln.gradient_descent(nets, TOY, lr=jnp.full(3, lr), on_divergence="ignore")
        m = mdln.measure(traj, TOY)
        assert np.all(np.asarray(m.status) == Status.DIVERGED), m.failure_reasons()
        assert np.all(np.isnan(np.asarray(m.time_ratio))) and np.all(
            np.isnan(np.asarray(m.misattribution))
        )
        assert all("lower lr" in r and "t_max" not in r for r in m.failure_reasons())
    short = mdln.gradient_descent(_net(), TOY, lr=0.01, n_steps=10)
    assert int(short.status) == Status.NOT_CONVERGED and "n_steps" in short.failure_reasons()[0]


def test_gd_batch_names_the_bad_learning_rate():
    nets = _nets(3)
    with pytest.raises(ValueError, match=r"lr\[1\] = nan"):
        mdln.gradient_descent(nets, TOY, lr=jnp.array([0.01, jnp.nan, 0.01]))


def test_gd_divergence_warning_counts_members():
    nets = _nets(3, width=8)
    with pytest.warns(RuntimeWarning, match=r"diverged for 1 of 3 member\(s\) \(indices \[2\]\)"):
        mdln.gradient_descent(nets, TOY, lr=jnp.array([0.01, 0.02, 5.0]), n_steps=2000)


def test_traced_invalid_member_is_flagged_and_the_rest_solved():
    """Observed: jax.vmap(Statistics.toy) with one rho = 1.2 in four lost the whole batch with
    'got a traced value'. Eagerly the member is named; under jit it is flagged INVALID_INPUT and
    the other members equal their solves on their own."""
    rho = jnp.array([0.0, 0.5, 1.2, -0.5])
    ratio = jnp.full(4, 2.0)
    nets = _nets(4, u0=1e-6)
    stats = jax.vmap(mdln.Statistics.toy)(rho, ratio)
    with pytest.raises(ValueError, match=r"member 2"):
        mdln.gradient_flow(nets, stats, n_save=256)

    @jax.jit
    def run(rho, ratio):
        s = jax.vmap(mdln.Statistics.toy)(rho, ratio)
        traj = mdln.gradient_flow(nets, s, n_save=256)
        return traj, mdln.measure(traj, s)

    traj, m = run(rho, ratio)
    assert np.asarray(m.status).tolist()[2] == Status.INVALID_INPUT
    ok = [0, 1, 3]
    assert np.all(np.asarray(m.status)[ok] == Status.OK)
    good = mdln.gradient_flow(
        jax.tree.map(lambda a: a[jnp.array(ok)], nets),
        jax.vmap(mdln.Statistics.toy)(rho[jnp.array(ok)], ratio[:3]),
        n_save=256,
        horizon_cap=1,
    )
    np.testing.assert_allclose(
        np.asarray(traj.weights)[ok], np.asarray(good.weights), rtol=1e-12, atol=1e-300
    )


def test_concrete_invalid_member_is_named():
    s = jax.vmap(mdln.Statistics.toy)(jnp.zeros(3), jnp.full(3, 2.0))
    bad = mdln.Statistics(
        s.sigma_xx.at[1].set(jnp.array([[1.0, 2.0], [2.0, 1.0]])), s.sigma_yx, s.sigma_yy, d_A=1
    )
    with pytest.raises(ValueError, match=r"member 1"):
        mdln.gradient_flow(_nets(3), bad, n_save=256)


def test_zero_member_batch_is_refused():
    s = jax.vmap(mdln.Statistics.toy)(jnp.zeros(0), jnp.zeros(0) + 2.0)
    with pytest.raises(ValueError, match=r"0 members"):
        mdln.gradient_flow(_net(), s)
