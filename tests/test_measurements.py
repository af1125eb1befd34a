import jax
import jax.numpy as jnp
import numpy as np

import multimodal_dln as mdln


def test_hermite_interpolation_is_exact_for_cubics():
    ts = jnp.array([0.0, 0.7, 1.5, 3.0])
    f = lambda t: 2 * t**3 - t**2 + 0.5 * t - 1  # noqa: E731
    df = lambda t: 6 * t**2 - 2 * t + 0.5  # noqa: E731
    for t in (0.1, 1.0, 2.2, 2.99):
        np.testing.assert_allclose(mdln.hermite_interpolate(ts, f(ts), df(ts), t), f(t), rtol=1e-12)


def test_crossing_time_of_a_logistic_on_a_coarse_grid():
    """The half-rise time of W(t) = 1 / (1 + 1e6 e^{-2t}) is ln(1e6) / 2. On a log grid whose
    spacing near the crossing (~0.9) is about twice the sigmoid's width (0.5), the Hermite
    crossing is within 1e-3 relative; the authors' argmin-over-grid is ~10x worse here."""
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, 30.0, 60)])
    w = 1 / (1 + 1e6 * jnp.exp(-2 * ts))
    dw = 2 * w * (1 - w)
    t_half = mdln.crossing_time(ts, w, dw, 0.5)
    exact = np.log(1e6) / 2
    np.testing.assert_allclose(t_half, exact, rtol=1e-3)
    t_argmin = float(ts[jnp.argmin((w - 0.5) ** 2)])
    assert abs(t_argmin - exact) > 10 * abs(float(t_half) - exact)
    assert np.isnan(float(mdln.crossing_time(ts, w, dw, 2.0)))
    assert float(mdln.crossing_time(ts, w + 1, dw, 0.5)) == 0.0


def test_crossing_precision_matches_a_dense_grid():
    """Phase times from the default 512-point grid agree with a 4096-point grid to 1e-4."""
    stats = mdln.Statistics.toy(0.5, 2.0)
    net = mdln.FusionDLN.init(
        jax.random.key(0), depth=2, fusion_layer=2, width=8, d_A=1, d_B=1, init_scale=1e-9
    )
    coarse = mdln.measure(mdln.gradient_flow(net, stats), stats)
    fine = mdln.measure(mdln.gradient_flow(net, stats, n_save=4096), stats)
    np.testing.assert_allclose(coarse.t_A, fine.t_A, rtol=1e-4)
    np.testing.assert_allclose(coarse.t_B, fine.t_B, rtol=1e-4)
    np.testing.assert_allclose(coarse.misattribution, fine.misattribution, rtol=1e-3)


def test_generalization_error_curve():
    pop = mdln.Statistics.toy(0.3, 2.0, noise=0.5)
    stats = mdln.sample(jax.random.key(1), pop, 64).statistics()
    net = mdln.FusionDLN.init(
        jax.random.key(0), depth=2, fusion_layer=2, width=8, d_A=1, d_B=1, init_scale=1e-4
    )
    traj = mdln.gradient_flow(net, stats, n_save=64, converge_rtol=1e-12)
    eg = mdln.generalization_error_curve(traj, pop)
    # E_g(0) = 1/2 w* Sigma w*^T (weights ~ 0); at the end, the OLS error of the sample fit.
    w_star = jnp.array([[1.0, 1.0]])
    np.testing.assert_allclose(eg[0], 0.5 * (w_star @ pop.sigma_xx @ w_star.T)[0, 0], rtol=1e-6)
    w_ols = stats.optimal_weights()
    np.testing.assert_allclose(eg[-1], pop.generalization_error(w_ols), rtol=1e-3)
