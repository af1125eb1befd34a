import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln
from multimodal_dln._statistics_checks import statistics_valid


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
        jax.random.key(1),
        depth=depth,
        fusion_layer=fusion_layer,
        width=5,
        d_A=3,
        d_B=2,
        d_out=2,
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
    # The teacher W* ~ U(-1, 1) (drawn from the second half of the key, as documented) is
    # recovered from noiseless statistics: W* = Sigma_yx Sigma_xx^-1 (measured max error 1.7e-13).
    teachers = jax.vmap(
        lambda k: jax.random.uniform(jax.random.split(k)[1], (1, 4), minval=-1.0, maxval=1.0)
    )(keys)
    np.testing.assert_allclose(s.optimal_weights(), teachers, atol=1e-10)
    assert float(jnp.max(jnp.abs(teachers))) > 0.99  # the draws span (-1, 1)


def test_toy_optimal_weights_are_the_teacher():
    """Toy closed form (docs/theory.md §1, §2): Sigma_yx = w Sigma_xx, so W* = (w_A, w_B) for
    every rho, ratio and noise level; L* = noise^2 / 2."""
    rho = jnp.array([-0.9, -0.3, 0.0, 0.6, 0.95])
    ratio = jnp.array([3.0, 0.5, 1.0, 2.0, 1.5])
    w_A, w_B, noise = (
        jnp.array([1.0, -2.0, 0.3, 4.0, 1.5]),
        jnp.array([1.0, 0.5, -1.0, 0.0, 2.5]),
        jnp.linspace(0, 1, 5),
    )
    s = mdln.Statistics.toy(rho, ratio, noise, w_A=w_A, w_B=w_B)
    np.testing.assert_allclose(
        s.optimal_weights()[:, 0], jnp.stack([w_A, w_B], axis=-1), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(s.min_loss(), 0.5 * noise**2, atol=1e-12)


def test_unimodal_weights_and_plateau_toy():
    rho, r = 0.5, 2.0
    s = mdln.Statistics.toy(rho, r)
    np.testing.assert_allclose(s.unimodal_weights("A"), [[1 + rho / r]])
    ratio = mdln.theory.plateau_loss(s) / s.loss(jnp.zeros((1, 2)))
    np.testing.assert_allclose(ratio, (1 - rho**2) / (r**2 + 2 * rho * r + 1), rtol=1e-12)


def test_toy_accepts_array_arguments():
    """Array arguments give a batch; each member equals the scalar constructor (and vmap) bit
    for bit."""
    rhos, ratios, w_A = (
        jnp.array([-0.5, 0.0, 0.5]),
        jnp.array([1.0, 2.0, 3.0]),
        jnp.array([1.0, -2.0, 0.5]),
    )
    s = mdln.Statistics.toy(rhos, ratios, 0.1, w_A=w_A)
    assert (
        s.sigma_xx.shape == (3, 2, 2)
        and s.sigma_yx.shape == (3, 1, 2)
        and s.sigma_yy.shape == (3, 1, 1)
    )
    v = jax.vmap(lambda r, q, w: mdln.Statistics.toy(r, q, 0.1, w_A=w))(rhos, ratios, w_A)
    for i in range(3):
        one = mdln.Statistics.toy(float(rhos[i]), float(ratios[i]), 0.1, w_A=float(w_A[i]))
        for a, b, c in zip(
            jax.tree.leaves(s), jax.tree.leaves(v), jax.tree.leaves(one), strict=True
        ):
            np.testing.assert_array_equal(a[i], c)
            np.testing.assert_array_equal(b[i], c)
    jitted = jax.jit(mdln.Statistics.toy)(rhos, ratios, 0.1, w_A=w_A)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(s), strict=True):
        np.testing.assert_array_equal(a, b)


def test_toy_vmap_over_noise_is_unchanged():
    rhos, ratios, noises = jnp.array([0.3, -0.2]), jnp.array([2.0, 0.5]), jnp.array([0.0, 0.7])
    s = jax.vmap(mdln.Statistics.toy)(rhos, ratios, noises)
    for i in range(2):
        one = mdln.Statistics.toy(float(rhos[i]), float(ratios[i]), float(noises[i]))
        for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(one), strict=True):
            np.testing.assert_array_equal(a[i], b)


def _samples(key, n=5):
    ka, kb, ky = jax.random.split(key, 3)
    return jax.random.normal(ka, (n, 2)), jax.random.normal(kb, (n, 1)), jax.random.normal(ky, (n,))


def test_from_samples_non_finite_eager_message():
    x_A, x_B, y = _samples(jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"^y\[3, 0\] = nan: y contains NaN or inf \(first at sample 3\); "
        r"it must be finite\.$",
    ):
        mdln.Statistics.from_samples(x_A, x_B, y.at[3].set(jnp.nan))
    with pytest.raises(
        ValueError,
        match=(
            r"^x_B\[1, 0\] = inf: x_B contains NaN or inf \(first at sample 1\); it must be finite "
            r"\(2 of 5 entries are bad\)\.$"
        ),
    ):
        mdln.Statistics.from_samples(x_A, x_B.at[1, 0].set(jnp.inf).at[4, 0].set(jnp.nan), y)
    with pytest.raises(
        ValueError, match=r"^x_A\[0, 1\] = -inf: x_A contains NaN or inf \(first at sample 0\)"
    ):
        mdln.Statistics.from_samples(x_A.at[0, 1].set(-jnp.inf), x_B, y)


def test_from_samples_under_jit_poisons_instead_of_inf():
    x_A, x_B, y = _samples(jax.random.key(1))
    build = jax.jit(mdln.Statistics.from_samples)
    good = build(x_A, x_B, y)
    eager = mdln.Statistics.from_samples(x_A, x_B, y)
    for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(eager), strict=True):
        np.testing.assert_array_equal(a, b)
    assert bool(statistics_valid(good))
    for bad in (
        (x_A.at[2, 0].set(jnp.nan), x_B, y),
        (x_A, x_B.at[0, 0].set(jnp.inf), y),
        (x_A, x_B, y.at[4].set(-jnp.inf)),
    ):
        s = build(*bad)
        assert all(np.all(np.isnan(np.asarray(a))) for a in jax.tree.leaves(s))
        assert not bool(statistics_valid(s))


def test_from_samples_under_vmap_poisons_only_the_bad_member():
    sets = [_samples(k) for k in jax.random.split(jax.random.key(2), 3)]
    sets[1] = (sets[1][0].at[2, 1].set(jnp.nan), sets[1][1], sets[1][2])
    x_A, x_B, y = (jnp.stack(a) for a in zip(*sets, strict=True))
    s = jax.vmap(mdln.Statistics.from_samples)(x_A, x_B, y)
    np.testing.assert_array_equal(statistics_valid(s), [True, False, True])
    assert all(np.all(np.isnan(np.asarray(a[1]))) for a in jax.tree.leaves(s))
    for i in (0, 2):
        one = mdln.Statistics.from_samples(*sets[i])
        for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-14)  # vmapped vs one: round-off
