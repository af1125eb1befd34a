import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln


def test_toy_blocks_and_loss():
    rho, r, noise = 0.3, 2.0, 0.5
    s = mdln.Statistics.toy(rho, r, noise)
    np.testing.assert_allclose(s.sigma_A, [[r**2]])
    np.testing.assert_allclose(s.sigma_B, [[1.0]])
    np.testing.assert_allclose(s.sigma_AB, [[rho * r]])
    np.testing.assert_allclose(s.sigma_yxA, [[r**2 + rho * r]])
    np.testing.assert_allclose(s.sigma_yxB, [[1 + rho * r]])
    # L(0) = 1/2 E[y^2] = 1/2 (r^2 + 2 rho r + 1 + noise^2); L* = 1/2 noise^2 at W* = (1, 1).
    np.testing.assert_allclose(s.loss(jnp.zeros((1, 2))), 0.5 * (r**2 + 2 * rho * r + 1 + noise**2))
    np.testing.assert_allclose(s.optimal_weights(), [[1.0, 1.0]], rtol=1e-12)
    np.testing.assert_allclose(s.min_loss(), 0.5 * noise**2, rtol=1e-10)


def test_toy_vmaps_over_parameters():
    rhos, ratios = jnp.array([-0.5, 0.0, 0.5]), jnp.array([1.0, 2.0, 3.0])
    s = jax.vmap(mdln.Statistics.toy)(rhos, ratios)
    assert s.sigma_xx.shape == (3, 2, 2) and s.d_A == 1
    np.testing.assert_allclose(s.sigma_A[:, 0, 0], ratios**2)


def _random_dataset(key, n=64, d_A=3, d_B=2, o=2):
    ka, kb, ky = jax.random.split(key, 3)
    x_A = jax.random.normal(ka, (n, d_A))
    x_B = jax.random.normal(kb, (n, d_B)) + 0.5 * x_A[:, :1]
    y = jax.random.normal(ky, (n, o))
    return mdln.Dataset(x_A, x_B, y)


@pytest.mark.parametrize("depth,fusion_layer", [(2, 2), (3, 2), (3, 1), (4, 3)])
def test_statistics_loss_and_gradient_equal_sample_loss(key, depth, fusion_layer):
    """Loss and gradient through empirical statistics == autodiff over the samples (1e-10 rel)."""
    data = _random_dataset(key)
    stats = data.statistics()
    net = mdln.FusionDLN.init(
        jax.random.key(1), depth=depth, fusion_layer=fusion_layer, width=5, d_A=3, d_B=2, d_out=2,
        init_scale=0.7,
    )
    l_stat, g_stat = eqx.filter_value_and_grad(mdln.population_loss)(net, stats)
    l_samp, g_samp = eqx.filter_value_and_grad(mdln.sample_loss)(net, data)
    np.testing.assert_allclose(l_stat, l_samp, rtol=1e-10)
    for a, b in zip(jax.tree.leaves(g_stat), jax.tree.leaves(g_samp), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * float(jnp.abs(b).max()))


def test_sample_reproduces_population_statistics(key):
    pop = mdln.Statistics.toy(0.5, 2.0, noise=0.3)
    data = mdln.sample(key, pop, 200_000)
    emp = data.statistics()
    # Monte-Carlo error ~ few / sqrt(n) relative to the scale of the entries.
    np.testing.assert_allclose(emp.sigma_xx, pop.sigma_xx, atol=0.05)
    np.testing.assert_allclose(emp.sigma_yx, pop.sigma_yx, atol=0.05)
    np.testing.assert_allclose(emp.sigma_yy, pop.sigma_yy, atol=0.1)
    w_hat = emp.optimal_weights()
    np.testing.assert_allclose(w_hat, [[1.0, 1.0]], atol=0.01)


def test_random_statistics_inverse_wishart():
    """Sigma^-1 ~ Wishart(df, Psi^-1), so E[Sigma^-1] = df Psi^-1 (checked over 4000 draws)."""
    keys = jax.random.split(jax.random.key(3), 4000)
    s = jax.vmap(lambda k: mdln.Statistics.random(k, 2, 2))(keys)
    assert s.sigma_xx.shape == (4000, 4, 4) and s.sigma_yx.shape == (4000, 1, 4)
    assert np.all(np.linalg.eigvalsh(np.asarray(s.sigma_xx)) > 0)
    prec_mean = np.mean(np.linalg.inv(np.asarray(s.sigma_xx)), axis=0)
    expected = 6 * np.diag([0.5, 0.5, 1.0, 1.0])  # df = d + 2 = 6, Psi = diag(2, 2, 1, 1)
    np.testing.assert_allclose(prec_mean, expected, atol=0.3)
    # The teacher is recovered exactly from noiseless statistics.
    w = s.optimal_weights()
    assert np.all(np.abs(np.asarray(w)) <= 1.0 + 1e-8)


def test_unimodal_weights_and_plateau_toy():
    rho, r = 0.5, 2.0
    s = mdln.Statistics.toy(rho, r)
    np.testing.assert_allclose(s.unimodal_weights("A"), [[1 + rho / r]])
    ratio = mdln.theory.plateau_loss(s) / s.loss(jnp.zeros((1, 2)))
    np.testing.assert_allclose(ratio, (1 - rho**2) / (r**2 + 2 * rho * r + 1), rtol=1e-12)
