"""Every bad input gets a clear error naming the parameter and the allowed range."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln
from multimodal_dln import _memory, _validation
from multimodal_dln._dataset import dataset_valid
from multimodal_dln._memory import check_solve_memory
from multimodal_dln._network import param_count
from multimodal_dln._statistics_checks import statistics_valid
from multimodal_dln._training import n_params_per_member
from multimodal_dln._validation import (
    check_dtype,
    check_finite,
    check_open_interval,
    check_positive,
    check_positive_int,
)

# The package's own one-line errors for wrongly typed input (what a user without a type checker
# sees): runtime type checking is off for this module (conftest, `wrong_types`).
pytestmark = pytest.mark.wrong_types


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


def test_traced_bad_value_gives_nan_member_not_an_error():
    """Inside jit/vmap a bad value cannot raise without failing the whole batch: the member
    built from it is all-NaN, the others are bit-identical to the eager values."""
    rhos, ratios = jnp.array([0.0, 0.5, 1.2, 0.0]), jnp.full(4, 2.0)
    for build in (jax.vmap(mdln.Statistics.toy), jax.jit(jax.vmap(mdln.Statistics.toy))):
        s = build(rhos, ratios)
        for i in (0, 1, 3):
            eager = mdln.Statistics.toy(float(rhos[i]), 2.0)
            for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(eager), strict=True):
                np.testing.assert_array_equal(a[i], b)
        assert all(np.all(np.isnan(np.asarray(a[2]))) for a in jax.tree.leaves(s))
        np.testing.assert_array_equal(statistics_valid(s), [True, True, False, True])
    one = jax.jit(mdln.Statistics.toy)(jnp.asarray(1.2), jnp.asarray(2.0))
    assert all(np.all(np.isnan(np.asarray(a))) for a in jax.tree.leaves(one))


def test_non_positive_definite_covariance():
    bad = mdln.Statistics(
        jnp.array([[1.0, 2.0], [2.0, 1.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[3.0]]), d_A=1
    )
    with pytest.raises(
        ValueError,
        match=r"sigma_xx \(input covariance\) must be symmetric and positive semi-definite",
    ):
        mdln.gradient_flow(_net(), bad)
    asym = mdln.Statistics(
        jnp.array([[1.0, 0.5], [0.0, 1.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[3.0]]), d_A=1
    )
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
    with pytest.raises(
        ValueError,
        match=r"network dims \(d_A, d_B, d_out\) = \(2, 1, 1\) do not match the data's \(1, 1, 1\)",
    ):
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
    with pytest.raises(ValueError, match=r"rtol must be a number in the open interval \(0, 1\)"):
        mdln.gradient_flow(_net(), stats, rtol=0.0)
    with pytest.raises(ValueError, match=r"lr \(learning rate\) must be finite and > 0"):
        mdln.gradient_descent(_net(), stats, lr=0.0)
    with pytest.raises(ValueError, match=r"n_steps must be a positive integer"):
        mdln.gradient_descent(_net(), stats, lr=0.1, n_steps=0)
    with pytest.raises(ValueError, match=r"n \(number of samples\) must be a positive integer"):
        mdln.sample(jax.random.key(0), stats, 0)


def _exact(message):
    """pytest.raises pattern matching exactly `message` (one line)."""
    return "^" + re.escape(message) + "$"


# ---- 1. concrete batches name the first bad member -----------------------------------------
def test_batch_message_names_the_member():
    with pytest.raises(
        ValueError,
        match=_exact(
            "rho[2] = 1.2: rho must lie in the open interval (-1.0, 1.0) (2 of 4 members are bad)."
        ),
    ):
        mdln.Statistics.toy(jnp.array([0.0, 0.5, 1.2, 1.5]), 2.0)
    with pytest.raises(ValueError, match=_exact("ratio[1] = -2.0: ratio must be finite and > 0.")):
        mdln.Statistics.toy(0.0, np.array([2.0, -2.0, 3.0]))
    with pytest.raises(
        ValueError, match=_exact("lr[1] = nan: lr (learning rate) must be finite and > 0.")
    ):
        check_positive("lr (learning rate)", np.array([0.1, np.nan, 0.2]))
    # Scalars keep the short form.
    with pytest.raises(
        ValueError, match=_exact("rho must lie in the open interval (-1.0, 1.0); got 1.2.")
    ):
        check_open_interval("rho", 1.2, -1.0, 1.0)
    with pytest.raises(ValueError, match=_exact("w_A must be finite (not NaN or inf); got nan.")):
        check_finite("w_A", float("nan"))


def test_traced_check_poisons_only_bad_entries():
    f = jax.jit(lambda r: check_open_interval("rho", r, -1.0, 1.0))
    np.testing.assert_array_equal(f(jnp.array([0.25, 1.5, -0.5])), [0.25, np.nan, -0.5])
    g = jax.vmap(lambda lr: check_positive("lr (learning rate)", lr))
    np.testing.assert_array_equal(g(jnp.array([0.1, 0.0, 2.0])), [0.1, np.nan, 2.0])


# ---- 4. useless errors replaced by one named line -------------------------------------------
@pytest.mark.parametrize(
    "width,shown", [(4.0, "4.0"), (4.5, "4.5"), (True, "True"), ("4", "'4'"), (None, "None")]
)
def test_width_must_be_an_integer(width, shown):
    msg = (
        "width must be a positive integer or a sequence of depth - 1 = 1 positive integers; "
        f"got {shown}."
    )
    with pytest.raises(ValueError, match=_exact(msg)):
        _net(width=width)


def test_width_sequence_names_the_bad_entry():
    with pytest.raises(
        ValueError,
        match=_exact(
            "width[1] = 2.0: width must be a positive integer or a sequence of depth - 1 = 2 "
            "positive integers."
        ),
    ):
        _net(depth=3, width=[4, 2.0])
    with pytest.raises(
        ValueError,
        match=r"sequence of depth - 1 = 2 positive integers; got 3 widths: \[4, 4, 4\]\.$",
    ):
        _net(depth=3, width=[4, 4, 4])


def test_numpy_integers_are_accepted():
    i = np.int64
    net = mdln.FusionDLN.init(
        jax.random.key(0),
        depth=i(3),
        fusion_layer=np.int32(2),
        width=i(4),
        d_A=i(2),
        d_B=np.uint8(1),
        d_out=i(1),
    )
    assert (net.depth, net.fusion_layer, net.d_A, net.d_B, net.d_out) == (3, 2, 2, 1, 1)
    assert type(net.depth) is int and net.fusion_A.shape == (4, 4)
    assert _net(depth=3, width=(i(4), i(5))).shared[0].shape == (1, 5)
    assert check_positive_int("max_steps", np.int16(7)) == 7


_KEY = jax.random.key(0)
_NUMERIC = [
    ("init_scale (u0) must be a positive number", lambda v: _net(init_scale=v)),
    (
        "rho must be a number in the open interval (-1.0, 1.0)",
        lambda v: mdln.Statistics.toy(v, 2.0),
    ),
    ("ratio must be a positive number", lambda v: mdln.Statistics.toy(0.0, v)),
    ("noise must be a number >= 0", lambda v: mdln.Statistics.toy(0.0, 2.0, v)),
    ("w_A must be a finite real number or array", lambda v: mdln.Statistics.toy(0.0, 2.0, w_A=v)),
    ("w_B must be a finite real number or array", lambda v: mdln.Statistics.toy(0.0, 2.0, w_B=v)),
    ("scale_A must be a positive number", lambda v: mdln.Statistics.random(_KEY, 2, 2, scale_A=v)),
    ("scale_B must be a positive number", lambda v: mdln.Statistics.random(_KEY, 2, 2, scale_B=v)),
    ("noise must be a number >= 0", lambda v: mdln.Statistics.random(_KEY, 2, 2, noise=v)),
    ("negative_slope must be a finite number", lambda v: _net(negative_slope=v)),
]


@pytest.mark.parametrize(
    "bad,shown", [("1e-3", "'1e-3'"), (True, "True"), (None, "None"), (np.bool_(False), "False")]
)
@pytest.mark.parametrize("rule,build", _NUMERIC, ids=[r.split()[0] for r, _ in _NUMERIC])
def test_numeric_parameters_reject_strings_bools_none(rule, build, bad, shown):
    with pytest.raises(ValueError, match=_exact(f"{rule}; got {shown}.")):
        build(bad)


def test_bool_arrays_are_not_numbers():
    with pytest.raises(
        ValueError, match=_exact("ratio must be a positive number; got array([ True, False]).")
    ):
        mdln.Statistics.toy(0.0, np.array([True, False]))


@pytest.mark.parametrize(
    "dtype,shown",
    [
        (jnp.float16, "float16"),
        (jnp.bfloat16, "bfloat16"),
        (jnp.int32, "int32"),
        ("foo", "'foo'"),
        (None, "None"),
    ],
)
def test_check_dtype_rejects(dtype, shown):
    with pytest.raises(ValueError, match=_exact(f"dtype must be float32 or float64; got {shown}.")):
        check_dtype(dtype)


def test_check_dtype_accepts_and_needs_x64_for_float64(monkeypatch):
    assert check_dtype(jnp.float32) == np.float32 and check_dtype("float64") == np.float64
    monkeypatch.setattr(_validation, "_x64_enabled", lambda: False)
    assert check_dtype("float32") == np.float32
    with pytest.raises(
        ValueError,
        match=r"^dtype must be float32 or float64 \(float64 needs 64-bit JAX.*"
        r"got float64 with 64-bit JAX disabled\.$",
    ):
        check_dtype(np.float64)


@pytest.mark.parametrize(
    "bad,shown",
    [(0, "0"), (-1, "-1"), (True, "True"), (2.0, "2.0"), ("3", "'3'"), (np.int64(0), "0")],
)
def test_check_positive_int(bad, shown):
    with pytest.raises(
        ValueError, match=_exact(f"max_steps must be a positive integer (>= 1); got {shown}.")
    ):
        check_positive_int("max_steps", bad)


def test_toy_overflow_blames_the_parameter():
    with pytest.raises(
        ValueError,
        match=_exact(
            "ratio = 1e+200 gives a non-finite Var(x_A) = ratio^2; ratio must be finite, > 0 "
            "and below 1.34e+154."
        ),
    ):
        mdln.Statistics.toy(0, 1e200)
    with pytest.raises(
        ValueError,
        match=_exact(
            "ratio[1] = 1e+200 gives a non-finite Var(x_A) = ratio^2; ratio must be finite, > 0 "
            "and below 1.34e+154."
        ),
    ):
        mdln.Statistics.toy(jnp.array([0.0, 0.5]), jnp.array([2.0, 1e200]))
    with pytest.raises(
        ValueError,
        match=_exact(
            "noise = 1e+200 gives a non-finite label-noise variance noise^2; noise must be "
            "finite, >= 0 and below 1.34e+154."
        ),
    ):
        mdln.Statistics.toy(0.0, 2.0, 1e200)
    with pytest.raises(
        ValueError,
        match=_exact(
            "w_A = 1e+200 and w_B = 1.0 (with ratio = 2.0, noise = 0.0) give a non-finite "
            "E[y x] or E[y^2] (overflow); lower |w_A|, |w_B|, ratio or noise."
        ),
    ):
        mdln.Statistics.toy(0.0, 2.0, w_A=1e200)
    # Traced: the overflowing member is NaN, the other one intact.
    s = jax.vmap(mdln.Statistics.toy)(jnp.zeros(2), jnp.array([2.0, 1e200]))
    np.testing.assert_array_equal(statistics_valid(s), [True, False])
    assert np.all(np.isnan(np.asarray(s.sigma_xx[1])))


# ---- memory --------------------------------------------------------------------------------
def test_solve_memory_check(monkeypatch):
    assert check_solve_memory(2, 10, 8, copies=3, what="for the solver stages") == 480
    monkeypatch.setattr(_memory, "available_memory", lambda: (int(23.4e9), "this device has"))
    with pytest.raises(
        ValueError,
        match=_exact(
            "the solve needs about 25.6 GB (4 members x 20,000,200 parameters x 8 bytes x 40 "
            "copies for the solver stages) but this device has 23.4 GB; lower width, depth or "
            "the batch size."
        ),
    ):
        check_solve_memory(4, 20_000_200, 8, copies=40, what="for the solver stages")
    assert (
        check_solve_memory(4, 20_000_200, 8, copies=20, what="for the solver stages")
        == 12_800_128_000
    )


def test_huge_network_fails_before_allocating(monkeypatch):
    def no_draws(*a, **k):
        raise AssertionError("random arrays were drawn")

    monkeypatch.setattr(jax.random, "normal", no_draws)
    monkeypatch.setattr(jax.random, "split", no_draws)
    n = param_count(depth=4, fusion_layer=2, width=100000, d_A=1, d_B=1)
    assert n == 2 * 100000 + 2 * 100000**2 + 100000**2 + 100000
    with pytest.raises(
        ValueError,
        match=r"^the network needs about 240\.0 GB \(1 member x 30,000,300,000 parameters "
        r"x 8 bytes x 1 copy \(the weights\)\) but this (device|machine) has [0-9.]+ GB; "
        r"lower width \(got 100000\) or depth \(got 4\)\.$",
    ):
        mdln.FusionDLN.init(jax.random.key(0), depth=4, fusion_layer=2, width=100000, d_A=1, d_B=1)


@pytest.mark.parametrize(
    "depth,lf,width", [(1, 1, 3), (2, 2, 4), (3, 1, [5, 7]), (4, 2, 6), (3, 3, [5, 7])]
)
def test_param_count_matches_the_network(depth, lf, width):
    kw = dict(depth=depth, fusion_layer=lf, width=width, d_A=3, d_B=2, d_out=2)
    net = mdln.FusionDLN.init(jax.random.key(0), **kw)
    n_params = n_params_per_member(net, None)
    assert param_count(**kw) == n_params == sum(a.size for a in jax.tree.leaves(net))
    nets = eqx.filter_vmap(lambda k: mdln.FusionDLN.init(k, **kw))(
        jax.random.split(jax.random.key(0), 3)
    )
    assert n_params_per_member(nets, 0) == param_count(**kw)


# ---- 3. statistics validity, per member ------------------------------------------------------
def _five_statistics():
    """Members: valid, NaN, not PSD, asymmetric, inconsistent sigma_yy."""
    s = mdln.Statistics.toy(0.5, 2.0, 0.1)
    sxx, syx, syy = s.sigma_xx, s.sigma_yx, s.sigma_yy
    members = [
        (sxx, syx, syy),
        (sxx.at[0, 1].set(jnp.nan), syx, syy),
        (jnp.array([[1.0, 2.0], [2.0, 1.0]]), syx, syy),
        (sxx.at[0, 1].add(0.5), syx, syy),
        (sxx, syx, 0.5 * syy),
    ]
    return mdln.Statistics(*(jnp.stack(a) for a in zip(*members, strict=True)), d_A=1)


def test_statistics_valid_per_member():
    stats = _five_statistics()
    expected = [True, False, False, False, False]
    np.testing.assert_array_equal(statistics_valid(stats), expected)
    np.testing.assert_array_equal(jax.jit(statistics_valid)(stats), expected)
    np.testing.assert_array_equal(jax.vmap(statistics_valid)(stats), expected)
    f32 = jax.tree.map(lambda a: a.astype(jnp.float32), stats)
    np.testing.assert_array_equal(statistics_valid(f32), expected)
    assert bool(
        statistics_valid(mdln.Statistics.toy(0.5, 2.0))
    )  # noiseless: zero label noise is fine


def test_validate_statistics_names_the_member():
    stats = _five_statistics()
    with pytest.raises(
        ValueError,
        match=_exact(
            "statistics member 1: sigma_xx contains NaN or inf; it must be finite (4 of 5 members "
            "are invalid)."
        ),
    ):
        mdln.validate_statistics(stats)
    one = jax.tree.map(lambda a: a[jnp.array([0, 0, 0, 2])], stats)
    with pytest.raises(
        ValueError,
        match=_exact(
            "statistics member 3: sigma_xx (input covariance) must be symmetric and positive "
            "semi-definite (smallest eigenvalue -1)."
        ),
    ):
        mdln.validate_statistics(one)
    with pytest.raises(
        ValueError,
        match=_exact(
            "sigma_xx (input covariance) must be symmetric and positive semi-definite (smallest "
            "eigenvalue -1)."
        ),
    ):
        mdln.validate_statistics(jax.tree.map(lambda a: a[2], stats))
    with pytest.raises(
        ValueError,
        match=r"^sigma_yy - sigma_yx sigma_xx\^\+ sigma_yx\^T \(label-noise covariance\) "
        r"must be positive semi-definite \(smallest eigenvalue -[0-9.]+\)\.$",
    ):
        mdln.validate_statistics(jax.tree.map(lambda a: a[4], stats))
    # Traced: returned unchanged (statistics_valid flags the members), no error.
    out = jax.jit(mdln.validate_statistics)(stats)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(stats), strict=True):
        np.testing.assert_array_equal(a, b)


def test_zero_member_batch():
    empty = mdln.Statistics.toy(jnp.zeros(0), 2.0)
    assert empty.sigma_xx.shape == (0, 2, 2)
    with pytest.raises(
        ValueError, match=r"^statistics batch has 0 members; a batch needs at least one"
    ):
        mdln.validate_statistics(empty)


# ---- 6. Statistics.random, Dataset and sample arguments --------------------------------------
def test_random_statistics_arguments():
    k = jax.random.key(0)
    s = mdln.Statistics.random(k, np.int64(2), np.int32(1), np.int64(2), df=np.int64(5))
    assert (s.d_A, s.d_B, s.d_out) == (2, 1, 2) and type(s.d_A) is int
    with pytest.raises(
        ValueError, match=_exact("d_B must be a positive integer (>= 1); got True.")
    ):
        mdln.Statistics.random(k, 2, True)
    with pytest.raises(ValueError, match=_exact("d_A must be a positive integer (>= 1); got '2'.")):
        mdln.Statistics.random(k, "2", 2)
    with pytest.raises(
        ValueError,
        match=_exact(
            "df (inverse-Wishart degrees of freedom) must be an integer > d - 1 = 3; got 6.0."
        ),
    ):
        mdln.Statistics.random(k, 2, 2, df=6.0)
    with pytest.raises(
        ValueError,
        match=r"^scale_A must be a scalar \(vmap over keys and values for a batch\); "
        r"got shape \(3,\)\.$",
    ):
        mdln.Statistics.random(k, 2, 2, scale_A=jnp.ones(3))


def test_dataset_and_sample_arguments():
    stats = mdln.Statistics.toy(0.5, 2.0, 0.1)
    assert mdln.sample(jax.random.key(0), stats, np.int64(5)).n == 5
    for bad, shown in ((True, "True"), (5.0, "5.0"), ("5", "'5'")):
        with pytest.raises(
            ValueError,
            match=_exact(f"n (number of samples) must be a positive integer (>= 1); got {shown}."),
        ):
            mdln.sample(jax.random.key(0), stats, bad)
    batch = jax.vmap(mdln.Statistics.toy)(jnp.zeros(2), jnp.full(2, 2.0))
    with pytest.raises(
        ValueError,
        match=_exact("stats must be one member (vmap sample over a batch); got batch shape (2,)."),
    ):
        mdln.sample(jax.random.key(0), batch, 5)
    with pytest.raises(
        ValueError,
        match=r"^sigma_xx \(input covariance\) must be symmetric and positive semi-definite",
    ):
        mdln.sample(jax.random.key(0), jax.tree.map(lambda a: a[2], _five_statistics()), 5)
    with pytest.raises(
        ValueError,
        match=_exact(
            "x_A must be a real array of shape (n, k) (n samples); got ArrayImpl of dtype "
            "float64 and shape (3,)."
        ),
    ):
        mdln.Dataset(jnp.ones(3), jnp.ones((3, 1)), jnp.ones((3, 1)))
    with pytest.raises(
        ValueError, match=r"^y must be a real array of shape \(n, k\) \(n samples\); got list"
    ):
        mdln.Dataset(jnp.ones((3, 1)), jnp.ones((3, 1)), [[1.0]] * 3)


def test_dataset_valid_per_member():
    stats = mdln.Statistics.toy(0.5, 2.0, 0.1)
    data = jax.vmap(lambda k: mdln.sample(k, stats, 4))(jax.random.split(jax.random.key(0), 3))
    data = mdln.Dataset(data.x_A, data.x_B.at[1, 2, 0].set(jnp.inf), data.y)
    np.testing.assert_array_equal(dataset_valid(data), [True, False, True])
    np.testing.assert_array_equal(jax.jit(dataset_valid)(data), [True, False, True])
