import warnings

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln


def _net(**kw):
    args = dict(depth=3, fusion_layer=2, width=4, d_A=1, d_B=1, init_scale=0.3)
    args.update(kw)
    return mdln.FusionDLN.init(jax.random.key(0), **args)


def _flat(net):
    return jax.flatten_util.ravel_pytree(eqx.filter(net, eqx.is_array))[0]


def test_gd_converges_to_gradient_flow_first_order():
    """||theta_GD(T / lr) - theta_GF(T)|| halves when lr halves (first order in lr)."""
    stats = mdln.Statistics.toy(0.5, 2.0)
    net = _net()
    T = 2.0  # mid-learning: the solution is still moving
    gf = mdln.gradient_flow(net, stats, t_max=T, rtol=1e-12, atol=1e-14, n_save=8)
    assert not bool(gf.converged) and float(gf.t_end) == pytest.approx(T)
    ref = _flat(gf.final)
    errs = []
    for n in (100, 200, 400, 800):
        gd = mdln.gradient_descent(net, stats, lr=T / n, n_steps=n, n_save=8, converge_rtol=1e-14)
        assert int(gd.num_steps) == n
        errs.append(float(jnp.linalg.norm(_flat(gd.final) - ref)))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.2)), (errs, ratios)


def test_gd_time_is_steps_times_lr_and_phase_times_close_to_flow():
    stats = mdln.Statistics.toy(0.0, 2.0)
    net = mdln.FusionDLN.init(jax.random.key(1), depth=2, fusion_layer=2, width=8, d_A=1, d_B=1, init_scale=1e-6)
    gd = mdln.gradient_descent(net, stats, lr=1e-3)
    np.testing.assert_allclose(gd.ts[1:] / 1e-3, np.round(np.asarray(gd.ts[1:]) / 1e-3), atol=1e-6)
    m_gd, m_gf = mdln.measure(gd, stats), mdln.measure(mdln.gradient_flow(net, stats), stats)
    assert bool(m_gd.success) and bool(m_gf.success)
    # O(lr x growth rate) = O(1e-3 x 8) difference in escape times.
    np.testing.assert_allclose(m_gd.t_A, m_gf.t_A, rtol=0.01)
    np.testing.assert_allclose(m_gd.time_ratio, m_gf.time_ratio, rtol=0.01)


def test_gd_on_samples_equals_gd_on_their_statistics(key):
    data = mdln.sample(key, mdln.Statistics.toy(0.3, 2.0, noise=0.2), 128)
    net = _net()
    a = mdln.gradient_descent(net, data, lr=0.05, n_steps=300, n_save=16)
    b = mdln.gradient_descent(net, data.statistics(), lr=0.05, n_steps=300, n_save=16)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-8)


def test_diverging_learning_rate_is_detected_per_member():
    stats = mdln.Statistics.toy(0.0, 2.0)
    nets = eqx.filter_vmap(lambda k: _net(init_scale=0.5))(jax.random.split(jax.random.key(0), 2))
    lrs = jnp.array([0.02, 5.0])
    with pytest.warns(RuntimeWarning, match=r"diverged for 1 of 2 .* lr = \[5\.0\].*lr < "):
        traj = mdln.gradient_descent(nets, stats, lr=lrs, n_steps=2000)
    np.testing.assert_array_equal(traj.solver_ok, [True, False])
    assert bool(traj.success[0]) and not bool(traj.success[1])
    assert np.all(np.isfinite(np.asarray(traj.weights[1])))  # frozen at its last finite state
    with pytest.raises(ValueError, match="lr"):
        mdln.gradient_descent(nets, stats, lr=lrs, n_steps=2000, on_divergence="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mdln.gradient_descent(nets, stats, lr=lrs, n_steps=2000, on_divergence="ignore")


def test_stable_lr_estimate_separates_stable_and_divergent():
    stats = mdln.Statistics.toy(0.0, 2.0)
    net = _net(init_scale=0.5)
    lr_max = float(mdln.stable_lr_estimate(net, stats))
    ok = mdln.gradient_descent(net, stats, lr=0.5 * lr_max, n_steps=5000, on_divergence="ignore")
    # GD can stay stable somewhat above the estimate (it settles in a flatter, unbalanced
    # minimum; measured here: converges at 3x, diverges at 5x), so test well beyond it.
    bad = mdln.gradient_descent(net, stats, lr=10.0 * lr_max, n_steps=5000, on_divergence="ignore")
    assert bool(ok.success) and not bool(bad.solver_ok)
