"""Every bad input gets a clear error naming the parameter and the allowed range."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import multimodal_dln as mdln


def _net(**kw):
    args = dict(depth=2, fusion_layer=2, width=4, d_A=1, d_B=1, init_scale=1e-3)
    args.update(kw)
    return mdln.FusionDLN.init(jax.random.key(0), **args)


@pytest.mark.parametrize("lf", [0, 4, -1])
def test_fusion_layer_out_of_range(lf):
    with pytest.raises(ValueError, match=r"fusion_layer \(L_f\).*\[1, 3\]"):
        _net(depth=3, fusion_layer=lf)


@pytest.mark.parametrize(
    "kw,pattern",
    [
        (dict(width=0), r"width must be a positive integer"),
        (dict(depth=0), r"depth \(L\) must be a positive integer"),
        (dict(init_scale=0.0), r"init_scale \(u0\) must be finite and > 0"),
        (dict(init_scale=-1e-3), r"init_scale \(u0\) must be finite and > 0"),
        (dict(init_scale=float("nan")), r"init_scale \(u0\)"),
        (dict(init="orthogonal"), r"init must be one of"),
        (dict(activation="tanh"), r"activation must be one of"),
    ],
)
def test_bad_network_arguments(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        _net(**kw)


@pytest.mark.parametrize("rho", [1.0, -1.0, 1.5, float("nan")])
def test_rho_must_be_a_correlation(rho):
    with pytest.raises(ValueError, match=r"rho must lie in the open interval \(-1.0, 1.0\)"):
        mdln.Statistics.toy(rho, 2.0)


def test_ratio_and_noise():
    with pytest.raises(ValueError, match=r"ratio must be finite and > 0"):
        mdln.Statistics.toy(0.0, 0.0)
    with pytest.raises(ValueError, match=r"noise must be finite and >= 0"):
        mdln.Statistics.toy(0.0, 2.0, noise=-0.1)


def test_traced_bad_value_raises_at_run_time():
    build = jax.jit(mdln.Statistics.toy)
    with pytest.raises(Exception, match=r"rho must lie in the open interval"):
        jax.block_until_ready(build(jnp.asarray(1.2), jnp.asarray(2.0)))


def test_non_positive_definite_covariance():
    bad = mdln.Statistics(jnp.array([[1.0, 2.0], [2.0, 1.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[3.0]]), d_A=1)
    with pytest.raises(ValueError, match=r"sigma_xx \(input covariance\) must be symmetric and positive semi-definite"):
        mdln.gradient_flow(_net(), bad)
    asym = mdln.Statistics(jnp.array([[1.0, 0.5], [0.0, 1.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[3.0]]), d_A=1)
    with pytest.raises(ValueError, match=r"symmetric"):
        mdln.validate_statistics(asym)


def test_inconsistent_output_moment():
    """Sigma_yy smaller than what Sigma_yx implies is no distribution's statistics."""
    s = mdln.Statistics.toy(0.0, 2.0)
    bad = mdln.Statistics(s.sigma_xx, s.sigma_yx, 0.5 * s.sigma_yy, d_A=1)
    with pytest.raises(ValueError, match=r"label-noise covariance"):
        mdln.gradient_flow(_net(), bad)


def test_nan_in_statistics():
    s = mdln.Statistics.toy(0.0, 2.0)
    bad = mdln.Statistics(s.sigma_xx, s.sigma_yx.at[0, 0].set(jnp.nan), s.sigma_yy, d_A=1)
    with pytest.raises(ValueError, match=r"sigma_yx contains NaN or inf"):
        mdln.gradient_flow(_net(), bad)
    with pytest.raises(ValueError, match=r"x_A contains NaN or inf"):
        mdln.Statistics.from_samples(jnp.array([[jnp.inf]]), jnp.ones((1, 1)), jnp.ones(1))


def test_mismatched_dimensions():
    stats = mdln.Statistics.toy(0.0, 2.0)
    with pytest.raises(ValueError, match=r"network dims \(d_A, d_B, d_out\) = \(2, 1, 1\) do not match the data's \(1, 1, 1\)"):
        mdln.gradient_flow(_net(d_A=2), stats)
    with pytest.raises(ValueError, match=r"sigma_yx must have shape \(o, d\) with d = 2"):
        mdln.Statistics(jnp.eye(2), jnp.ones((1, 3)), jnp.ones((1, 1)), d_A=1)
    with pytest.raises(ValueError, match=r"d_A .* must be an integer in \[1, 1\]"):
        mdln.Statistics(jnp.eye(2), jnp.ones((1, 2)), jnp.ones((1, 1)), d_A=2)
    with pytest.raises(ValueError, match=r"same number of samples"):
        mdln.Statistics.from_samples(jnp.ones((3, 1)), jnp.ones((2, 1)), jnp.ones(3))
    nets = eqx.filter_vmap(lambda k: _net())(jax.random.split(jax.random.key(0), 3))
    stats4 = jax.vmap(mdln.Statistics.toy)(jnp.zeros(4), jnp.full(4, 2.0))
    with pytest.raises(ValueError, match=r"batch sizes differ: 3 networks but 4 statistics"):
        mdln.gradient_flow(nets, stats4)


def test_nonlinear_net_needs_samples():
    with pytest.raises(ValueError, match=r"activation='relu' cannot train on statistics alone"):
        mdln.gradient_flow(_net(activation="relu"), mdln.Statistics.toy(0.0, 2.0))


def test_solver_and_gd_arguments():
    stats = mdln.Statistics.toy(0.0, 2.0)
    with pytest.raises(ValueError, match=r"t_max must be finite and > 0"):
        mdln.gradient_flow(_net(), stats, t_max=-1.0)
    with pytest.raises(ValueError, match=r"rtol must be in \(0, 1\)"):
        mdln.gradient_flow(_net(), stats, rtol=0.0)
    with pytest.raises(ValueError, match=r"lr \(learning rate\) must be finite and > 0"):
        mdln.gradient_descent(_net(), stats, lr=0.0)
    with pytest.raises(ValueError, match=r"n_steps must be a positive integer"):
        mdln.gradient_descent(_net(), stats, lr=0.1, n_steps=0)
    with pytest.raises(ValueError, match=r"n \(number of samples\) must be a positive integer"):
        mdln.sample(jax.random.key(0), stats, 0)
