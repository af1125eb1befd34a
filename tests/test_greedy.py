"""Greedy-learning diagnostics (multimodal_dln.greedy): closed forms, sample forms, speeds."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln
from multimodal_dln import greedy
from multimodal_dln._two_head import TwoHeadFusionNet

head_outputs = eqx.filter_jit(greedy.head_outputs)  # one compile instead of op-by-op dispatch


def _late(key=jax.random.key(0), width=100, u0=1e-9):
    return mdln.FusionDLN.init(
        key, depth=2, fusion_layer=2, width=width, d_A=1, d_B=1, init_scale=u0, init="entrywise"
    )


def _two_layer_with_total(w_A, w_B, width=3):
    """A 2-layer late-fusion net whose effective weights are exactly (w_A, w_B)."""
    net = _late(width=width, u0=1.0)
    e = jnp.zeros((width, 1)).at[0, 0].set(1.0)
    return eqx.tree_at(
        lambda n: (n.branch_A[0], n.branch_B[0], n.fusion_A, n.fusion_B),
        net,
        (e, e, w_A * e.T, w_B * e.T),
    )


@pytest.mark.parametrize("rho", [-0.5, 0.0, 0.3, 0.5, 0.9])
def test_unimodal_plateau_d_util_is_exactly_minus_one(rho):
    """docs/theory.md §6: on the plateau W = (1 + rho sigma_B/sigma_A, 0), u(B|A) = 0 and
    u(A|B) = 1, so d_util = -1 for every rho; R^2(f) = 1 - sigma_B^2 (1 - rho^2) / V."""
    ratio = 2.0
    stats = mdln.Statistics.toy(rho, ratio)
    net = _two_layer_with_total(1.0 + rho / ratio, 0.0)
    u = greedy.utilization(net, stats)
    assert float(u.d_util) == -1.0
    assert float(u.u_10) == 0.0 and float(u.u_01) == 1.0
    V = ratio**2 + 2 * rho * ratio + 1.0
    np.testing.assert_allclose(u.perf[0], 1 - (1 - rho**2) / V, rtol=1e-14)


def test_converged_d_util_closed_form():
    """At W = w* = (1, 1): d_util = (sigma_B^2 - sigma_A^2) / V; -0.6 (rho 0), -0.4286 (rho 0.5)."""
    rho = jnp.array([0.0, 0.5, -0.3, 0.7])
    ratio = jnp.array([2.0, 2.0, 1.5, 3.0])
    stats = jax.vmap(mdln.Statistics.toy)(rho, ratio)
    net = _two_layer_with_total(1.0, 1.0)
    u = jax.vmap(lambda s: greedy.utilization(net, s))(stats)
    V = ratio**2 + 2 * rho * ratio + 1
    np.testing.assert_allclose(u.d_util, (1 - ratio**2) / V, rtol=1e-13)
    np.testing.assert_allclose(u.d_util[:2], [-0.6, -3 / 7], rtol=1e-13)
    np.testing.assert_allclose(u.perf, 1.0, rtol=1e-14)


def test_sign_accuracy_closed_form_matches_samples(key):
    """Binary labels sign(w* x): Sheppard's formula against 200k Gaussian samples."""
    stats = mdln.Statistics.toy(0.5, 2.0)
    data = mdln.sample(key, stats, 200_000)
    for w in ([[1.25, 0.0]], [[0.0, 1.0]], [[1.0, -0.3]], [[0.4, 1.0]]):
        w = jnp.asarray(w)
        exact = greedy.performance(w, stats, "sign_accuracy")
        x = jnp.concatenate([data.x_A, data.x_B], axis=1)
        mc = greedy.sample_performance(x @ w.T, data.y, "accuracy")
        np.testing.assert_allclose(exact, mc, atol=3e-3)
    assert float(greedy.performance(jnp.zeros((1, 2)), stats, "sign_accuracy")) == 0.5
    # Plateau with the accuracy metric: f_A-only = f, so u(B|A) = 0 and d_util = -u(A|B).
    u = greedy.utilization(_two_layer_with_total(1.25, 0.0), stats, metric="sign_accuracy")
    assert float(u.u_10) == 0.0 and float(u.perf_imputed[1]) == 0.5
    np.testing.assert_allclose(u.d_util, -(u.perf[0] - 0.5) / u.perf[0], rtol=1e-14)


@pytest.mark.parametrize("rho", [0.5, 0.0])
def test_mu_is_squared_residual_correlation_and_initial_d_speed(rho):
    """Two-layer late fusion, scalar modalities: mu(theta_X) = r_X^2 exactly (any weights),
    and at init d_speed = 4 log10((1 + rho r) / (r^2 + rho r)): -1.592 (rho 0.5), -2.408 (0)."""
    stats = mdln.Statistics.toy(rho, 2.0)
    grad = eqx.filter_jit(jax.grad(mdln.loss))
    for net in (_late(), _late(jax.random.key(3), width=7, u0=0.7)):
        grads = grad(net, stats)
        m = greedy.mu(grads, net)
        r = (stats.sigma_yx - net.total_weights() @ stats.sigma_xx)[0]
        np.testing.assert_allclose(m[0], r[0] ** 2, rtol=1e-13)
        np.testing.assert_allclose(m[1], r[1] ** 2, rtol=1e-13)
        # single head: theta_0 = theta'_1 = theta_A, theta_1 = theta'_0 = theta_B
        assert m[0] == m[3] and m[1] == m[2]
    net = _late()
    m = greedy.mu(grad(net, stats), net)
    s10, s01, d = greedy.conditional_speeds(m)
    expected = 4 * np.log10((1 + 2 * rho) / (4 + 2 * rho))
    np.testing.assert_allclose(d, expected, rtol=1e-12)
    np.testing.assert_allclose(expected, {0.5: -1.592, 0.0: -2.408}[rho], atol=5e-4)
    assert float(s01) == -float(s10)
    np.testing.assert_allclose(d, 2 * np.log10(m[1] / m[0]), rtol=1e-13)


def test_mu_is_a_ratio_of_sums_over_the_group():
    net = TwoHeadFusionNet.init(
        jax.random.key(1),
        depth=3,
        fusion_layers=(2, 3),
        width=4,
        d_A=2,
        d_B=3,
        d_out=2,
        init_scale=1.0,
    )
    grads = jax.tree.map(lambda a: np.sin(np.arange(a.size, dtype=float)).reshape(a.shape), net)
    m = greedy.mu(grads, net)
    sel = greedy.group_selectors(net)
    for j, name in enumerate(greedy.GROUPS):
        num = sum(np.sum(np.asarray(g) ** 2) for g in sel[name](grads))
        den = sum(np.sum(np.asarray(p) ** 2) for p in sel[name](net))
        np.testing.assert_allclose(m[j], num / den, rtol=1e-13)
    # two heads: theta_i (branch layers + head) and theta'_i (cross-connections in) are disjoint
    ids = [id(a) for name in greedy.GROUPS for a in sel[name](net)]
    assert len(ids) == len(set(ids)) == 2 * 3 + 2 * 2


def test_head_outputs_and_effective_weights_agree_with_the_networks(key):
    k1, k2, k3 = jax.random.split(key, 3)
    x_A, x_B = jax.random.normal(k1, (9, 3)), jax.random.normal(k2, (9, 2))
    for act in ("linear", "relu"):
        net = mdln.FusionDLN.init(
            k3,
            depth=4,
            fusion_layer=3,
            width=5,
            d_A=3,
            d_B=2,
            d_out=2,
            init_scale=1.0,
            activation=act,
        )
        (y,), _ = head_outputs(net, x_A, x_B)
        np.testing.assert_allclose(y, jax.vmap(net)(x_A, x_B), rtol=1e-12, atol=1e-14)
    two = TwoHeadFusionNet.init(
        k3, depth=3, fusion_layers=(1, 3), width=4, d_A=3, d_B=2, d_out=2, init_scale=1.0
    )
    (y0, y1), _ = head_outputs(two, x_A, x_B)
    w0, w1 = greedy.head_weights(two)
    x = jnp.concatenate([x_A, x_B], axis=1)
    np.testing.assert_allclose(y0, x @ w0.T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y1, x @ w1.T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(jax.vmap(two)(x_A, x_B), 0.5 * (y0 + y1), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["single_relu", "two_head_relu"])
def test_mean_imputed_branch_is_invariant_to_the_other_modality(key, kind):
    """f_i' (cross-modal input at its training mean; Wu et al. 2022, docs/theory.md §6)
    ignores m_{1-i}, while f_i does not."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    if kind == "single_relu":
        net = mdln.FusionDLN.init(
            k1,
            depth=3,
            fusion_layer=2,
            width=8,
            d_A=2,
            d_B=3,
            d_out=2,
            init_scale=2.0,
            activation="relu",
        )
    else:
        net = TwoHeadFusionNet.init(
            k1,
            depth=3,
            fusion_layers=(2, 3),
            width=8,
            d_A=2,
            d_B=3,
            d_out=2,
            init_scale=2.0,
            activation="relu",
        )
    train = mdln.Dataset(
        jax.random.normal(k2, (50, 2)),
        jax.random.normal(k3, (50, 3)),
        jax.random.normal(k4, (50, 2)),
    )
    means = greedy.cross_means(net, train)
    x_A, x_B = train.x_A[:7], train.x_B[:7]
    x_B2 = x_B + 3.0 * jax.random.normal(k4, x_B.shape)
    x_A2 = x_A + 3.0 * jax.random.normal(k3, x_A.shape)
    h0 = head_outputs(net, x_A, x_B, (1.0, 0.0), means)[0][0]
    h0b = head_outputs(net, x_A, x_B2, (1.0, 0.0), means)[0][0]
    h1 = head_outputs(net, x_A, x_B, (0.0, 1.0), means)[0][-1]
    h1b = head_outputs(net, x_A2, x_B, (0.0, 1.0), means)[0][-1]
    np.testing.assert_array_equal(h0, h0b)
    np.testing.assert_array_equal(h1, h1b)
    assert not np.allclose(head_outputs(net, x_A, x_B2)[0][0], head_outputs(net, x_A, x_B)[0][0])


def test_utilization_of_a_known_configuration_is_hand_computed():
    """Toy data rho = 0.4, ratio 2 (Sigma = [[4, 0.8], [0.8, 1]], w* = (1, 1), V = 6.6) and a
    single head with W^tot = (0.9, 0.6), by hand (docs/theory.md §6, R^2 = 1 - e Sigma e^T / V
    with e = W - w*): R^2(f) = 1 - 0.264/6.6 = 24/25, R^2(A-only) = 1 - 1.2/6.6 = 9/11,
    R^2(B-only) = 1 - 4.8/6.6 = 3/11, so u(B|A) = 1 - (9/11)(25/24) = 13/88,
    u(A|B) = 1 - (3/11)(25/24) = 63/88 and d_util = -25/44."""
    stats = mdln.Statistics.toy(0.4, 2.0)
    net = _two_layer_with_total(0.9, 0.6)
    u = greedy.utilization(net, stats)
    np.testing.assert_allclose(u.perf, [24 / 25, 24 / 25], rtol=1e-13)
    np.testing.assert_allclose(u.perf_imputed, [9 / 11, 3 / 11], rtol=1e-13)
    np.testing.assert_allclose([u.u_10, u.u_01, u.d_util], [13 / 88, 63 / 88, -25 / 44], rtol=1e-13)


def test_sample_utilization_matches_the_closed_form_for_linear_networks(key):
    """Large Gaussian sample: sample R^2 rates -> closed-form rates (single and two heads)."""
    stats = mdln.Statistics.toy(0.4, 2.0, noise=0.3)
    data = mdln.sample(key, stats, 200_000)
    single = _two_layer_with_total(0.9, 0.6)
    two = TwoHeadFusionNet.init(
        jax.random.key(5),
        depth=2,
        fusion_layers=(2,),
        width=6,
        d_A=1,
        d_B=1,
        init_scale=1.0,
        init="entrywise",
    )
    for net in (single, two):
        exact = greedy.utilization(net, stats)
        mc = greedy.utilization(net, data)
        np.testing.assert_allclose(mc.perf, exact.perf, rtol=3e-3, atol=1e-2)
        np.testing.assert_allclose(mc.perf_imputed, exact.perf_imputed, rtol=3e-3, atol=1e-2)


def test_utilization_curve_along_a_trajectory():
    """d_util(t) from the saved W^tot(t) of a core `Trajectory` (here a synthetic one through
    init -> plateau -> convergence): 0-safe, -1 on the plateau, the closed form at the end.
    (Tracking along real GF/GD runs: tests/test_balanced.py.)"""
    stats = mdln.Statistics.toy(0.5, 2.0)
    w = jnp.array([[[1e-3, 1e-3]], [[1.25, 0.0]], [[1.25, 1e-12]], [[1.0, 1.0]]])
    traj = mdln.Trajectory(
        ts=jnp.arange(4.0),
        weights=w,
        weights_dot=jnp.zeros_like(w),
        loss=jnp.zeros(4),
        t_end=jnp.asarray(3.0),
        status=jnp.asarray(int(mdln.Status.OK)),
        num_steps=jnp.asarray(3),
        final=None,
        d_A=1,
    )
    curve = greedy.utilization_curve(traj, stats)
    assert curve.d_util.shape == (4,)
    assert float(curve.d_util[1]) == pytest.approx(-1.0, abs=1e-12)  # -1 to round-off
    np.testing.assert_allclose(curve.d_util[2], -1.0, atol=1e-10)
    np.testing.assert_allclose(curve.d_util[3], -3 / 7, rtol=1e-13)


@pytest.mark.wrong_types
def test_bad_inputs_name_the_parameter():
    stats = mdln.Statistics.toy(0.5, 2.0)
    net = _late(width=3)
    with pytest.raises(ValueError, match="metric"):
        greedy.utilization(net, stats, metric="f1")
    with pytest.raises(TypeError, match="FusionDLN or a TwoHeadFusionNet"):
        greedy.utilization("net", stats)
    with pytest.raises(ValueError, match="k \\(cared modality\\)"):
        greedy.blocked_selector(net, 2)
    relu = mdln.FusionDLN.init(
        jax.random.key(0), depth=2, fusion_layer=2, width=3, d_A=1, d_B=1, activation="relu"
    )
    with pytest.raises(ValueError, match="linear network"):
        greedy.utilization(relu, stats)
    with pytest.raises(ValueError, match="fusion_layers"):
        TwoHeadFusionNet.init(jax.random.key(0), depth=2, fusion_layers=(3,), width=3, d_A=1, d_B=1)
