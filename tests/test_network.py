import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln


def _net(key, **kw):
    args = dict(depth=4, fusion_layer=2, width=6, d_A=3, d_B=2, d_out=2, init_scale=0.5)
    args.update(kw)
    return mdln.FusionDLN.init(key, **args)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_layout_and_effective_weights_match_forward(key, depth):
    for lf in range(1, depth + 1):
        net = _net(key, depth=depth, fusion_layer=lf)
        assert len(net.branch_A) == len(net.branch_B) == lf - 1
        assert len(net.shared) == depth - lf
        w_A, w_B = net.effective_weights()
        assert w_A.shape == (2, 3) and w_B.shape == (2, 2)
        # Linear network: columns of W_m^tot are the responses to basis inputs.
        resp_A = jax.vmap(lambda e: net(e, jnp.zeros(2)))(jnp.eye(3)).T
        resp_B = jax.vmap(lambda e: net(jnp.zeros(3), e))(jnp.eye(2)).T
        np.testing.assert_allclose(w_A, resp_A, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(w_B, resp_B, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("depth,lf", [(2, 2), (4, 1), (4, 2), (4, 3), (4, 4)])
def test_aligned_init_is_balanced_rank_one_with_exact_scale(depth, lf):
    u0 = 0.1
    stats = mdln.Statistics.toy(0.5, 2.0)
    net = mdln.FusionDLN.init(
        jax.random.key(2),
        depth=depth,
        fusion_layer=lf,
        width=7,
        d_A=1,
        d_B=1,
        init_scale=u0,
        init="aligned",
        align_to=stats,
    )
    w_A, w_B = net.effective_weights()
    expected = u0**lf * (np.sqrt(2) * u0) ** (depth - lf)
    np.testing.assert_allclose(w_A, [[expected]], rtol=1e-12)  # positive, like W*_A = 1
    np.testing.assert_allclose(w_B, [[expected]], rtol=1e-12)
    # Balanced: W_{l+1}^T W_{l+1} = W_l W_l^T at every hidden layer (each branch, and the
    # fusion layer against the sum of the branch contributions).
    for br in (net.branch_A, net.branch_B):
        for lower, upper in zip(br[:-1], br[1:], strict=True):
            np.testing.assert_allclose(upper.T @ upper, lower @ lower.T, atol=1e-14)
    if lf > 1:
        np.testing.assert_allclose(
            net.fusion_A.T @ net.fusion_A, net.branch_A[-1] @ net.branch_A[-1].T, atol=1e-14
        )
    if net.shared:
        f = jnp.concatenate([net.fusion_A, net.fusion_B], axis=1)
        np.testing.assert_allclose(net.shared[0].T @ net.shared[0], f @ f.T, atol=1e-14)


def test_aligned_init_follows_solution_sign():
    """Sigma_yxB < 0 (rho = -0.9, ratio 3) but W*_B = 1 > 0: the B branch starts positive."""
    stats = mdln.Statistics.toy(-0.9, 3.0)
    assert float(stats.sigma_yxB[0, 0]) < 0
    net = mdln.FusionDLN.init(
        jax.random.key(0),
        depth=2,
        fusion_layer=2,
        width=4,
        d_A=1,
        d_B=1,
        init_scale=0.1,
        init="aligned",
        align_to=stats,
    )
    assert float(net.effective_weights()[1][0, 0]) > 0


@pytest.mark.parametrize("lf", [2, 3])
def test_random_init_layer_norms(lf):
    """Authors' deep_fusion scheme: branch layers ||W|| ~ u0, each fusion block ~ u0, shared
    ~ sqrt(2) u0."""
    u0 = 0.3
    make = eqx.filter_vmap(
        lambda k: _net(k, fusion_layer=lf, width=40, init_scale=u0, init="random")
    )
    nets = make(jax.random.split(jax.random.key(5), 200))
    fro = lambda a: jnp.sqrt(jnp.mean(jnp.sum(a**2, axis=(-2, -1))))  # noqa: E731  RMS norm over members
    for w in nets.branch_A + nets.branch_B:
        np.testing.assert_allclose(fro(w), u0, rtol=0.03)
    # Fusion blocks: a (h x h_A) share of a matrix with std sqrt(2) u0 / sqrt(h (h_A + h_B)).
    full = fro(jnp.concatenate([nets.fusion_A, nets.fusion_B], axis=-1))
    np.testing.assert_allclose(full, np.sqrt(2) * u0, rtol=0.03)
    for w in nets.shared:
        np.testing.assert_allclose(fro(w), np.sqrt(2) * u0, rtol=0.03)


def test_entrywise_init_std():
    net = mdln.FusionDLN.init(
        jax.random.key(0),
        depth=2,
        fusion_layer=2,
        width=2000,
        d_A=1,
        d_B=1,
        init_scale=1e-3,
        init="entrywise",
    )
    np.testing.assert_allclose(jnp.std(net.fusion_A), 1e-3, rtol=0.05)
    np.testing.assert_allclose(jnp.std(net.branch_A[0]), 1e-3, rtol=0.05)


def test_same_seed_same_network_and_traced_scale():
    a = _net(jax.random.key(7))
    b = _net(jax.random.key(7))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    # init_scale may be traced: one compiled builder serves every value.
    build = eqx.filter_jit(
        eqx.debug.assert_max_traces(lambda k, u: _net(k, init_scale=u), max_traces=1)
    )
    n1, n2 = build(jax.random.key(1), jnp.asarray(0.1)), build(jax.random.key(1), jnp.asarray(0.2))
    np.testing.assert_allclose(n2.fusion_A, 2 * n1.fusion_A, rtol=1e-12)


def test_relu_network_is_nonlinear():
    net = _net(jax.random.key(0), activation="relu", fusion_layer=2, init_scale=2.0)
    x_A, x_B = jnp.ones(3), jnp.ones(2)
    assert not np.allclose(net(x_A, x_B) + net(-x_A, -x_B), 0.0)
    lin = _net(jax.random.key(0), fusion_layer=2, init_scale=2.0)
    np.testing.assert_allclose(lin(x_A, x_B) + lin(-x_A, -x_B), 0.0, atol=1e-12)


def test_traced_bad_init_scale_gives_a_nan_member():
    """Under vmap a bad init_scale cannot raise: that member's weights are NaN, the rest exact."""
    keys, scales = jax.random.split(jax.random.key(3), 3), jnp.array([0.1, -1.0, 0.2])
    nets = eqx.filter_vmap(lambda k, u: _net(k, init_scale=u))(keys, scales)
    for i in (0, 2):
        one = _net(keys[i], init_scale=float(scales[i]))
        for a, b in zip(jax.tree.leaves(nets), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-15)
    assert all(np.all(np.isnan(np.asarray(a[1]))) for a in jax.tree.leaves(nets))


@pytest.mark.wrong_types  # also checks the errors for float / bool entries
def test_width_forms():
    """One width (Python or NumPy integer) or one per hidden layer; anything else is named."""
    net = _net(jax.random.key(0), width=np.int64(5))
    assert [w.shape[0] for w in net.branch_A + (net.fusion_A,) + net.shared[:-1]] == [5, 5, 5]
    net = _net(jax.random.key(0), width=np.array([3, 4, 5]))
    assert [w.shape[0] for w in net.branch_A + (net.fusion_A,) + net.shared[:-1]] == [3, 4, 5]
    with pytest.raises(
        ValueError, match=r"^width\[0\] = True: width must be a positive integer or a sequence"
    ):
        _net(jax.random.key(0), width=[True, 4, 5])
    with pytest.raises(
        ValueError,
        match=r"^fusion_layer \(L_f\) must be an integer in \[1, depth\] = \[1, 4\]; got 2\.0\.$",
    ):
        _net(jax.random.key(0), fusion_layer=2.0)


@pytest.mark.parametrize("activation", ["linear", "leaky_relu"])
def test_fusion_forward_drop_and_replace(key, activation):
    """`fusion_forward` (the greedy diagnostics' forward pass, docs/theory.md §6): no drop is the
    network itself; drop weight 1 on branch k swaps modality (1 - k)'s fused contribution for
    the given constant, which then gets exactly zero gradient; the returned means are those of
    the actual contributions."""
    from multimodal_dln._network import fusion_forward

    net = _net(key, activation=activation, negative_slope=0.2)
    kx, kb = jax.random.split(jax.random.key(7))
    x_A, x_B = jax.random.normal(kx, (5, 3)), jax.random.normal(kb, (5, 2))
    (y,), (m0, m1) = fusion_forward(net, x_A, x_B)
    np.testing.assert_allclose(y, jax.vmap(net)(x_A, x_B), rtol=1e-12, atol=1e-15)
    h_B = (
        jax.nn.leaky_relu(x_B @ net.branch_B[0].T, 0.2)
        if activation != "linear"
        else x_B @ net.branch_B[0].T
    )
    np.testing.assert_allclose(m0[0], jnp.mean(h_B @ net.fusion_B.T, axis=0), rtol=1e-12)
    r = (jnp.full(6, 0.3), jnp.full(6, -0.1))
    (y_drop,), _ = fusion_forward(net, x_A, 0 * x_B, drop=(1.0, 0.0), replace=((r[0],), None))
    (y_ref,), _ = fusion_forward(net, x_A, x_B, drop=(1.0, 0.0), replace=((r[0],), None))
    np.testing.assert_array_equal(y_drop, y_ref)  # B enters only through the constant
    if activation == "linear":
        w_A, _ = net.effective_weights()
        (y_A,), _ = fusion_forward(net, x_A, x_B, drop=(1.0, 0.0))
        np.testing.assert_allclose(y_A, x_A @ w_A.T, rtol=1e-12, atol=1e-15)

    def out(fusion_B):
        net_b = eqx.tree_at(lambda n: n.fusion_B, net, fusion_B)
        return jnp.sum(
            fusion_forward(net_b, x_A, x_B, drop=(1.0, 0.0), replace=((r[0],), None))[0][0]
        )

    assert not np.any(np.asarray(jax.grad(out)(net.fusion_B)))
