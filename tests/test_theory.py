"""multimodal_dln.theory: closed forms against the authors' reference values (docs/theory.md),
scipy quadrature, their own special cases, and (slow) against gradient-flow simulations."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

import multimodal_dln as mdln
from multimodal_dln import theory as th


def _np_random_stats(seed, d_A, d_B, n_batch=None):
    """Random full-rank vector statistics built in NumPy (Statistics.random is slow eagerly)."""
    rng = np.random.default_rng(seed)
    d = d_A + d_B
    shape = () if n_batch is None else (n_batch,)
    g = rng.normal(size=shape + (d + 2, d))
    sxx = np.linalg.inv(np.swapaxes(g, -1, -2) @ g)
    sxx = 0.5 * (sxx + np.swapaxes(sxx, -1, -2))
    w = rng.uniform(-1, 1, size=shape + (1, d))
    syx = w @ sxx
    return mdln.Statistics(
        jnp.asarray(sxx), jnp.asarray(syx), jnp.asarray(syx @ np.swapaxes(w, -1, -2)), d_A=d_A
    )


# ------------------------------------------------------------------------------------------------
# the deep integral formula (docs/theory.md §3)
# ------------------------------------------------------------------------------------------------
def _quad_integral(L, Lf, s_A, s_B, u0):
    """The integral of docs/theory.md §3 on the original u axis, by adaptive quadrature (as the
    authors' `sweep.lag_depth`)."""
    k = s_B / s_A

    def u_B(u):
        if Lf == 2:
            return u**k * u0 ** (1 - k)
        return (k * u ** (2 - Lf) + (1 - k) * u0 ** (2 - Lf)) ** (1 / (2 - Lf))

    def f(u):
        return 1.0 / (s_A * u ** (Lf - 1) * (u**2 + u_B(u) ** 2) ** ((L - Lf) / 2))

    points = [u0 * m for m in (1.5, 2, 4, 10, 100, 1000) if u0 * m < 1]
    value, err = quad(f, u0, 1.0, epsabs=0.0, epsrel=1e-13, limit=1000, points=points)
    assert err < 1e-11 * abs(value)
    return value


@pytest.mark.parametrize(
    "L,Lf,rho,ratio,u0",
    [
        (4, 2, 0.0, 2.0, 0.1),
        (4, 3, 0.0, 2.0, 0.1),
        (4, 3, -0.9, 2.0, 0.1),  # signed k_s < 0
        (4, 2, -0.9, 2.0, 0.03),
        (4, 3, 0.6, 2.0, 0.01),
        (4, 4, 0.5, 2.0, 0.01),
        (4, 1, 0.3, 2.0, 0.1),
        (6, 3, 0.2, 3.0, 0.05),
        (5, 4, -0.45, 1.5, 0.2),
        (3, 2, 0.2, 3.0, 1e-3),
        (2, 2, 0.0, 2.0, 1e-12),
    ],
)
def test_unimodal_integral_matches_scipy_quad(L, Lf, rho, ratio, u0):
    """Gauss-Legendre on u = e^x agrees with adaptive quadrature to 1e-8 relative."""
    d = th.drives_toy(rho, ratio)
    ours = float(th.unimodal_integral(L, Lf, d.s_A, d.s_B, u0))
    ref = _quad_integral(L, Lf, float(d.s_A), float(d.s_B), u0)
    assert abs(ours / ref - 1) < 1e-8, (ours, ref)


# The authors' `lag_depth` (L = 4), evaluated by running their function (docs/theory.md §3).
_RHOS = [-0.9, -0.675, -0.45, -0.225, 0.0, 0.225, 0.45, 0.675, 0.9]
_TABLE_RHO = {
    4: [16.789, 6.511, 4.762, 4.160, 4.000, 4.160, 4.762, 6.511, 16.789],
    3: [5.382, 2.480, 1.982, 1.805, 1.748, 1.773, 1.904, 2.303, 4.678],
    2: [2.354, 1.446, 1.290, 1.233, 1.213, 1.217, 1.251, 1.356, 1.994],
    1: [1.0] * 9,
}
_RATIOS = [1.2, 1.6, 2.0, 2.4, 2.8]
_TABLE_RATIO = {
    4: [1.44, 2.56, 4.00, 5.76, 7.84],
    3: [1.116, 1.395, 1.748, 2.179, 2.688],
    2: [1.036, 1.115, 1.213, 1.333, 1.473],
}
_U0S = [0.03, 0.0675, 0.105, 0.1425, 0.18]
_TABLE_U0 = {
    4: [4.0] * 5,
    3: [1.222, 1.502, 1.786, 2.080, 2.385],
    2: [1.029, 1.113, 1.231, 1.372, 1.532],
}


@pytest.mark.parametrize("Lf", [1, 2, 3, 4])
def test_lag_depth_reference_table(Lf):
    """vs rho (r = 2, u0 = 0.1), vs ratio (rho = 0), vs u0 (r = 2, rho = 0): all to 1e-3."""
    got = th.time_ratio_deep_toy(4, Lf, jnp.asarray(_RHOS), 2.0, 0.1)
    np.testing.assert_allclose(got, _TABLE_RHO[Lf], rtol=1e-3)
    if Lf > 1:
        np.testing.assert_allclose(
            th.time_ratio_deep_toy(4, Lf, 0.0, jnp.asarray(_RATIOS), 0.1),
            _TABLE_RATIO[Lf],
            rtol=1e-3,
        )
        np.testing.assert_allclose(
            th.time_ratio_deep_toy(4, Lf, 0.0, 2.0, jnp.asarray(_U0S)), _TABLE_U0[Lf], rtol=1e-3
        )


def test_deep_absolute_times_reference():
    """I = 8.09 tau (L_f = 2) and 10.03 tau (L_f = 3) at u0 = 0.1, r = 2, rho = 0
    (docs/theory.md §3)."""
    s = mdln.Statistics.toy(0.0, 2.0)
    t_A2, t_B2 = th.phase_times_deep(s, 4, 2, 0.1)
    t_A3, _ = th.phase_times_deep(s, 4, 3, 0.1)
    np.testing.assert_allclose([t_A2, t_A3], [8.09, 10.03], atol=5e-3)
    np.testing.assert_allclose(t_B2 / t_A2, 1.213, atol=1e-3)
    # Same numbers from the toy drives and from the statistics.
    np.testing.assert_allclose(
        th.time_ratio_deep(s, 4, 3, 0.1), th.time_ratio_deep_toy(4, 3, 0.0, 2.0, 0.1), rtol=1e-14
    )


@pytest.mark.parametrize("L", [2, 3, 4, 5, 6])
def test_deep_special_cases(L):
    """L_f = 1 -> exactly 1; L_f = L -> the two-layer formula for every L, and the integral has
    its closed form (u0^{2-L} - 1) / ((L - 2) s_A) (ln(1/u0) / s_A for L = 2)."""
    rho = jnp.asarray([-0.9, -0.3, 0.0, 0.5, 0.8])
    for u0 in (1e-3, 0.05, 0.2):
        assert np.all(np.asarray(th.time_ratio_deep_toy(L, 1, rho, 2.5, u0)) == 1.0)
        np.testing.assert_allclose(
            th.time_ratio_deep_toy(L, L, rho, 2.5, u0), th.time_ratio_toy(rho, 2.5), rtol=1e-13
        )
        d = th.drives_toy(rho, 2.5)
        closed = np.log(1 / u0) / d.s_A if L == 2 else (u0 ** (2 - L) - 1) / ((L - 2) * d.s_A)
        np.testing.assert_allclose(th.unimodal_integral(L, L, d.s_A, d.s_B, u0), closed, rtol=1e-12)
    s = mdln.Statistics.toy(0.3, 2.0)
    if L == 2:
        np.testing.assert_allclose(
            th.phase_times_deep(s, 2, 2, 1e-9)[0], th.learning_time_two_layer(s, 1e-9), rtol=1e-12
        )


def test_deep_formula_qualitative_laws():
    """At fixed u0 the ratio grows with L_f; intermediate fusion tends to 1 as u0 -> 0 (ratio - 1 =
    O(u0^{L-L_f}) for L_f >= 3), late fusion does not depend on u0 (docs/theory.md §3)."""
    u0 = jnp.asarray([1e-4, 1e-3, 1e-2, 0.1])
    r = {Lf: np.asarray(th.time_ratio_deep_toy(4, Lf, 0.3, 2.0, u0)) for Lf in (1, 2, 3, 4)}
    assert np.all(r[1] < r[2]) and np.all(r[2] < r[3]) and np.all(r[3] < r[4])
    assert np.all(np.diff(r[2]) > 0) and np.all(np.diff(r[3]) > 0) and np.ptp(r[4]) == 0
    slope = np.diff(np.log(r[3][:3] - 1)) / np.diff(np.log(np.asarray(u0[:3])))
    np.testing.assert_allclose(slope, 1.0, atol=0.02)  # L - L_f = 1


def test_theory_jits_and_vmaps_without_python_loops():
    @jax.jit
    def grid(rho, ratio, u0):
        stats = jax.vmap(mdln.Statistics.toy)(rho, ratio)
        f = jax.vmap(lambda s, u: th.time_ratio_deep(s, 4, 3, u))
        return f(stats, u0), jax.vmap(lambda s, u: th.phase_times_deep(s, 4, 2, u))(stats, u0)

    rho = jnp.linspace(-0.9, 0.9, 7)
    ratio = jnp.linspace(1.2, 3.0, 7)
    u0 = jnp.geomspace(1e-3, 0.2, 7)
    ratios, (t_A, t_B) = grid(rho, ratio, u0)
    assert ratios.dtype == jnp.float64
    for i in range(7):
        np.testing.assert_allclose(
            ratios[i], th.time_ratio_deep_toy(4, 3, rho[i], ratio[i], u0[i]), rtol=1e-12
        )
    assert bool(jnp.all(t_B > t_A))


def test_partner_scale_invariant():
    """u_B(u) solves du_B/du = k_s (u_B / u)^{L_f-1} with u_B(u0) = u0 (docs/theory.md §3)."""
    u0, k = 0.01, 0.3
    u = jnp.geomspace(u0, 1.0, 50)
    for Lf in (1, 2, 3, 4):
        uB = th.partner_scale(u, u0, k, Lf)
        np.testing.assert_allclose(uB[0], u0, rtol=1e-12)
        duB = jax.vmap(jax.grad(lambda x: th.partner_scale(x, u0, k, Lf)))(u)
        np.testing.assert_allclose(duB, k * (uB / u) ** (Lf - 1), rtol=1e-10)
    # tiny u0 does not overflow
    assert bool(jnp.all(jnp.isfinite(th.partner_scale(jnp.geomspace(1e-30, 1, 5), 1e-30, 0.5, 4))))


# ------------------------------------------------------------------------------------------------
# two-layer formulas (docs/theory.md §2) and the sign convention
# ------------------------------------------------------------------------------------------------
def test_two_layer_reference_values():
    cases = {
        (2.0, 0.0): 4.0,
        (2.0, 0.5): 5.0,
        (2.0, -0.5): 5.0,
        (2.0, 0.9): 16.789,
        (3.0, 0.0): 9.0,
        (3.0, -0.9): 43.1053,
        (1.5, 0.0): 2.25,
    }
    for (r, rho), want in cases.items():
        np.testing.assert_allclose(th.time_ratio_toy(rho, r), want, rtol=1e-4)
        np.testing.assert_allclose(
            th.time_ratio_two_layer(mdln.Statistics.toy(rho, r)), want, rtol=1e-4
        )
    np.testing.assert_allclose(th.time_ratio_toy(jnp.linspace(-0.9, 0.9, 5), 1.0), 1.0)
    # The norm form (authors' lag_twolayer) differs when Sigma_yxB < 0: 25.2 vs 43.1 (§2).
    np.testing.assert_allclose(
        th.time_ratio_two_layer(mdln.Statistics.toy(-0.9, 3.0), signed=False), 25.2, atol=0.05
    )


def test_gd_time_ratio_explains_the_authors_gd_runs():
    """Full-batch GD at lr 0.04 (the authors' setting): with every rate s -> ln(1 + lr s)/lr the
    leading-order ratio matches reference GD simulations of the authors' setting
    (docs/theory.md §2, GD correction) to 2 %, where the
    gradient-flow formula is up to 18 % above them; lr -> 0 recovers the flow formula."""
    pairs = [(2.0, 0.0), (2.0, 0.5), (2.0, -0.5), (1.5, 0.9), (3.0, 0.45), (3.0, -0.9)]
    reference_gd = np.array([3.74, 4.60, 4.88, 6.88, 9.09, 40.0])
    s = jax.vmap(mdln.Statistics.toy)(
        jnp.asarray([p[1] for p in pairs]), jnp.asarray([p[0] for p in pairs])
    )
    gd = np.asarray(th.time_ratio_two_layer_gd(s, 0.04))
    np.testing.assert_allclose(gd, reference_gd, rtol=0.02)
    assert np.max(np.asarray(th.time_ratio_two_layer(s)) / reference_gd - 1) > 0.15
    np.testing.assert_allclose(
        th.time_ratio_two_layer_gd(s, 1e-9), th.time_ratio_two_layer(s), rtol=1e-6
    )


def test_signed_form_is_invariant_to_teacher_signs():
    """Flipping the sign of a teacher weight mirrors the modality: the ratio must not change
    (the previous, unoriented signed form returned a negative 'ratio' for w* = (1, -1))."""
    for rho in (-0.6, 0.0, 0.4):
        base = th.time_ratio_two_layer(mdln.Statistics.toy(rho, 2.0))
        flipped = th.time_ratio_two_layer(mdln.Statistics.toy(-rho, 2.0, w_A=1.0, w_B=-1.0))
        both = th.time_ratio_two_layer(mdln.Statistics.toy(rho, 2.0, w_A=-1.0, w_B=-1.0))
        np.testing.assert_allclose([flipped, both], [base, base], rtol=1e-12)
        for Lf in (2, 3):
            np.testing.assert_allclose(
                th.time_ratio_deep(mdln.Statistics.toy(-rho, 2.0, w_A=1.0, w_B=-1.0), 4, Lf, 0.1),
                th.time_ratio_deep_toy(4, Lf, rho, 2.0, 0.1),
                rtol=1e-12,
            )


def test_drives_general_and_toy_agree():
    rho, r = jnp.asarray([-0.9, -0.2, 0.5]), jnp.asarray([3.0, 2.0, 1.5])
    s = jax.vmap(mdln.Statistics.toy)(rho, r)
    for a, b in zip(th.drives(s), th.drives_toy(rho, r), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # norm form for vector statistics: batch shape preserved
    sv = _np_random_stats(0, 3, 4, n_batch=5)
    d = th.drives(sv)
    assert all(np.shape(x) == (5,) for x in d) and bool(jnp.all(d.g_B > 0))
    vmapped = jax.vmap(th.drives)(s)  # a pytree: vmap/jit can return it
    np.testing.assert_allclose(vmapped.g_B, th.drives(s).g_B, rtol=1e-12)
    with pytest.raises(ValueError, match="signed=True needs scalar"):
        th.drives(sv, signed=True)


def test_phase_times_two_layer():
    s = mdln.Statistics.toy(0.5, 2.0)
    u0 = 1e-12
    t_A, t_B = th.phase_times_two_layer(s, u0)
    np.testing.assert_allclose(t_A, th.learning_time_two_layer(s, u0), rtol=1e-14)
    np.testing.assert_allclose(t_B / t_A, th.time_ratio_two_layer(s), rtol=1e-12)
    # The O(1) terms vanish relative to the leading ones as u0 -> 0.
    gaps = []
    for u in (1e-4, 1e-12, 1e-30, 1e-100):
        a1, b1 = th.phase_times_two_layer(s, u, order=1)
        gaps.append(abs(float(b1 / a1 / th.time_ratio_two_layer(s)) - 1))
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] and gaps[3] < 1e-3


def test_fixed_points_and_plateaus():
    rho, r, noise = 0.5, 2.0, 0.3
    s = mdln.Statistics.toy(rho, r, noise)
    y2 = r**2 + 2 * rho * r + 1 + noise**2
    np.testing.assert_allclose(th.fixed_point_loss(s, "0"), 0.5 * y2)
    np.testing.assert_allclose(th.fixed_point_loss(s, "*"), 0.5 * noise**2, rtol=1e-10)
    np.testing.assert_allclose(th.fixed_point_weights(s, "A"), [[1 + rho / r, 0.0]], rtol=1e-12)
    np.testing.assert_allclose(th.fixed_point_weights(s, "B"), [[0.0, 1 + rho * r]], rtol=1e-12)
    np.testing.assert_allclose(th.plateau_loss(s, "A"), th.fixed_point_loss(s, "A"))
    s0 = jax.vmap(mdln.Statistics.toy)(jnp.asarray([0.0, 0.5, 0.0]), jnp.asarray([2.0, 2.0, 3.0]))
    ratio = th.plateau_loss(s0) / th.fixed_point_loss(s0, "0")
    np.testing.assert_allclose(
        ratio,
        th.plateau_loss_ratio_toy(jnp.asarray([0.0, 0.5, 0.0]), jnp.asarray([2.0, 2.0, 3.0])),
        rtol=1e-12,
    )
    np.testing.assert_allclose(ratio, [0.2, 0.1071, 0.1], atol=5e-4)
    with pytest.raises(ValueError, match="point must be one of"):
        th.fixed_point_weights(s, "C")


def test_misattribution_general_form():
    """W_A^uni - W*_A = W*_B Sigma_BA Sigma_A^-1 (docs/theory.md §4), random vector statistics."""
    s = _np_random_stats(1, 4, 3)
    w_star = s.optimal_weights()
    expected = w_star[:, 4:] @ s.sigma_AB.T @ jnp.linalg.inv(s.sigma_A)
    np.testing.assert_allclose(th.misattribution(s), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        th.misattribution(mdln.Statistics.toy(0.5, 2.0)), [[0.25]], rtol=1e-12
    )
    np.testing.assert_allclose(th.misattribution_toy(-0.45, 3.0), -0.15)


def test_learned_first_and_unimodal_phase():
    s = jax.vmap(mdln.Statistics.toy)(jnp.asarray([0.0, 0.0, 0.0]), jnp.asarray([2.0, 1.0, 0.5]))
    np.testing.assert_array_equal(th.learned_first(s), [0, 0, 1])
    np.testing.assert_array_equal(th.has_unimodal_phase(s, 2, 2), [True, False, True])
    np.testing.assert_array_equal(th.has_unimodal_phase(s, 4, 3), [True, False, True])
    np.testing.assert_array_equal(th.has_unimodal_phase(s, 4, 1), [False, False, False])
    with pytest.raises(
        ValueError, match=r"fusion_layer \(L_f\) must be an integer in \[1, depth\]"
    ):
        th.has_unimodal_phase(s, 2, 3)


def test_superficial_preference_boundaries():
    """Prioritization (sigma_A/sigma_B)^-2 and contribution (sigma_A/sigma_B)^-1
    (docs/theory.md §4); the example sigma_A = 2, w* = (1.5, 4): A first, plateau
    L(M_A)/L(M_0) = 0.64."""
    sr = jnp.asarray([0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(th.prioritization_boundary(sr), sr**-2.0)
    np.testing.assert_allclose(th.contribution_boundary(sr), 1.0 / sr)
    assert bool(th.superficial_preference(1.5 / 4.0, 2.0))
    assert not bool(th.superficial_preference(1.0, 2.0)) and not bool(
        th.superficial_preference(0.2, 2.0)
    )
    assert bool(
        th.superficial_preference(3.0, 0.5)
    )  # B first (sigma_B larger) but A contributes more
    s = mdln.Statistics.toy(0.0, 2.0, w_A=1.5, w_B=4.0)
    assert int(th.learned_first(s)) == 0
    np.testing.assert_allclose(th.plateau_loss(s) / th.fixed_point_loss(s, "0"), 0.64, rtol=1e-12)
    np.testing.assert_allclose(
        th.plateau_loss(s, "B") / th.fixed_point_loss(s, "0"), 0.36, rtol=1e-12
    )


def _single_population(d=100, noise=0.5):
    """The authors' multi/'single' data (docs/theory.md §5): Sigma = diag(3 I_50, I_50),
    w* = 0.1, y = w* x + N(0, noise^2)."""
    h = d // 2
    sxx = jnp.diag(jnp.concatenate([jnp.full(h, 3.0), jnp.ones(h)]))
    w = jnp.full((1, d), 0.1)
    return mdln.Statistics(sxx, w @ sxx, w @ sxx @ w.T + noise**2, d_A=h)


def test_generalization_anchors():
    """E_g(0) = 1.0 and the population E_g at M_A = 0.25 (docs/theory.md §5); early fusion's
    min-norm interpolant is pinv(X) y and fits the training data exactly when n < d."""
    pop = _single_population()
    np.testing.assert_allclose(th.generalization_error(jnp.zeros((1, 100)), pop), 1.0, rtol=1e-12)
    np.testing.assert_allclose(th.unimodal_generalization_error(pop, pop), 0.25, rtol=1e-12)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 100)) * np.sqrt(np.diag(pop.sigma_xx))
    y = x @ np.full(100, 0.1) + 0.5 * rng.normal(size=70)
    sample = mdln.Statistics.from_samples(x[:, :50], x[:, 50:], y)
    w = th.min_norm_solution(sample)
    np.testing.assert_allclose(w[0], np.linalg.pinv(x) @ y, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(x @ np.asarray(w[0]), y, atol=1e-8)
    assert float(th.early_fusion_final_error(sample, pop)) > float(
        th.generalization_error(pop.optimal_weights(), pop)
    )


# ------------------------------------------------------------------------------------------------
# toy predictions per network structure (the sweeps' theory columns)
# ------------------------------------------------------------------------------------------------
def test_time_ratio_toy_network_matches_the_closed_forms():
    """Early fusion 1, late fusion `time_ratio_toy`, intermediate fusion `time_ratio_deep_toy`;
    NaN for depth 1, ratio < 1, |rho| >= 1 and intermediate fusion without u0 (docs/theory.md
    §2, §3). Broadcasts over every argument, depth and fusion layer included."""
    depth = np.array([4, 4, 4, 4, 3, 2, 2, 1, 4, 4, 4])
    lf = np.array([1, 2, 3, 4, 2, 2, 1, 1, 3, 4, 2])
    rho = np.array([0.3, -0.9, 0.2, 0.5, 0.45, -0.5, 0.0, 0.0, 0.2, 0.0, 1.0])
    ratio = np.array([2.0, 2.0, 2.0, 3.0, 1.5, 2.0, 2.0, 2.0, 0.5, 1.0, 2.0])
    u0 = np.array([0.1, 0.1, 0.05, 0.1, 0.03, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    got = th.time_ratio_toy_network(depth, lf, rho, ratio, u0)
    want = [
        1.0,
        float(th.time_ratio_deep_toy(4, 2, -0.9, 2.0, 0.1)),
        float(th.time_ratio_deep_toy(4, 3, 0.2, 2.0, 0.05)),
        float(th.time_ratio_toy(0.5, 3.0)),
        float(th.time_ratio_deep_toy(3, 2, 0.45, 1.5, 0.03)),
        float(th.time_ratio_toy(-0.5, 2.0)),
        1.0,
        np.nan,  # depth 1: no saddle
        np.nan,  # ratio < 1: B first
        1.0,  # ratio 1: no unimodal phase
        np.nan,  # |rho| = 1
    ]
    np.testing.assert_allclose(got, want, rtol=1e-14)
    # without u0 only intermediate fusion is undefined
    no_u0 = th.time_ratio_toy_network(depth, lf, rho, ratio)
    inter = (lf > 1) & (lf < depth)
    assert np.all(np.isnan(no_u0[inter]))
    np.testing.assert_array_equal(no_u0[~inter], got[~inter])
    # scalars give a Python float, equal to the deep formula
    one = th.time_ratio_toy_network(4, 3, 0.2, 2.0, 0.05)
    assert type(one) is float and one == float(th.time_ratio_deep_toy(4, 3, 0.2, 2.0, 0.05))
    # broadcasting a scalar structure over a rho grid
    rhos = np.linspace(-0.9, 0.9, 9)
    np.testing.assert_allclose(
        th.time_ratio_toy_network(4, 4, rhos, 2.0), th.time_ratio_toy(rhos, 2.0), rtol=1e-14
    )


def test_misattribution_toy_network_matches_the_closed_form():
    """rho / r where a unimodal phase is predicted (L_f >= 2, r > 1), NaN otherwise
    (docs/theory.md §4); `init_scale` is ignored."""
    depth = np.array([2, 2, 4, 4, 4, 3])
    lf = np.array([2, 1, 3, 4, 2, 3])
    rho = np.array([0.5, 0.5, -0.45, 0.9, 0.2, 0.3])
    ratio = np.array([2.0, 2.0, 3.0, 1.0, 0.5, 1.5])
    got = th.misattribution_toy_network(depth, lf, rho, ratio, init_scale=0.1)
    mis = np.asarray(th.misattribution_toy(rho, ratio))
    want = np.where((lf >= 2) & (ratio > 1.0), mis, np.nan)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[1]) and np.isnan(got[3]) and np.isnan(got[4])
    np.testing.assert_array_equal(got, th.misattribution_toy_network(depth, lf, rho, ratio))
    one = th.misattribution_toy_network(2, 2, 0.5, 2.0)
    assert type(one) is float and one == 0.25


def test_input_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"init_scale \(u0\) must lie in \(0, 1\)"):
        th.time_ratio_deep_toy(4, 3, 0.0, 2.0, 1.5)
    with pytest.raises(ValueError, match=r"init_scale \(u0\) must be finite and > 0"):
        th.unimodal_integral(4, 3, 4.0, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"rho must lie in the open interval"):
        th.time_ratio_deep_toy(4, 3, 1.0, 2.0, 0.1)
    with pytest.raises(ValueError, match=r"depth \(L\) must be a positive integer"):
        th.time_ratio_deep_toy(0, 1, 0.0, 2.0, 0.1)
    with pytest.raises(ValueError, match=r"order must be 0"):
        th.phase_times_two_layer(mdln.Statistics.toy(0.0, 2.0), 1e-3, order=2)


# ------------------------------------------------------------------------------------------------
# simulations against the theory (slow)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_layer_random_covariances_converge_to_norm_formula():
    """Two-layer late fusion on 100 random inverse-Wishart statistics (the paper's generator,
    D = 20, d_A = d_B = 10; relabelled so A is learned first; predictions in [1, 20] as the
    authors kept): gradient flow from a balanced init at u0 = 1e-100 gives t_B/t_A within a
    median 3 % of 1 + (||Sigma_yxA|| - ||Sigma_yxB||) / ||Sigma_yxB - W_A^uni Sigma_AB||
    (measured: median 1.5 %, 8 of 199 beyond 10 %, all at k_s = s_B/s_A near 1).

    The formula is the u0 -> 0 limit and converges slowly for vector modalities: the median error
    is ~3 / ln(1/u0) (11 % at u0 = 1e-12, 4.8 % at 1e-30; docs/reproduction.md)."""
    from multimodal_dln.experiments.zhang2024 import random_covariances

    stats, pred = random_covariances(100)
    n = len(pred)
    # built in one compiled program: eagerly, each operation of the aligned init would compile
    # separately (measured here: 9.2 -> 6.7 s CPU)
    nets = eqx.filter_jit(
        eqx.filter_vmap(
            lambda k, s: mdln.FusionDLN.init(
                k,
                depth=2,
                fusion_layer=2,
                width=1,
                d_A=10,
                d_B=10,
                init_scale=1e-100,
                init="aligned",
                align_to=s,
            )
        )
    )(jax.random.split(jax.random.key(1), n), stats)
    # buckets: 100 members with durations spread over decades; grouping them by the predicted
    # duration cuts the vmap waste (benchmarks/buckets) without changing any member's result.
    m = mdln.measure(mdln.gradient_flow(nets, stats, n_save=256, buckets=4), stats)
    ok = np.asarray(m.success)
    assert ok.mean() > 0.97
    rel = np.abs(np.asarray(m.time_ratio)[ok] / pred[ok] - 1)
    assert np.median(rel) <= 0.03, np.median(rel)
    assert np.mean(rel > 0.1) < 0.06, np.sort(rel)[-12:]


@pytest.mark.slow
def test_misattribution_across_rho():
    """Two-layer late fusion, u0 = 1e-12 (random scheme, width 16): W_A(t_uni) - W_A(inf) within
    2 % of rho / ratio for rho in [-0.9, 0.9] and ratio in {1.5, 2, 3} (2e-3 absolute at
    rho = 0)."""
    rhos = np.linspace(-0.9, 0.9, 7)
    grid = [(r, x) for r in (1.5, 2.0, 3.0) for x in rhos]
    ratio = jnp.asarray([g[0] for g in grid])
    rho = jnp.asarray([g[1] for g in grid])
    stats = jax.vmap(mdln.Statistics.toy)(rho, ratio)
    nets = eqx.filter_vmap(
        lambda k: mdln.FusionDLN.init(
            k, depth=2, fusion_layer=2, width=16, d_A=1, d_B=1, init_scale=1e-12
        )
    )(jax.random.split(jax.random.key(7), len(grid)))
    m = mdln.measure(mdln.gradient_flow(nets, stats), stats)
    assert bool(jnp.all(m.success))
    mis = np.asarray(m.misattribution[:, 0, 0])
    expected = np.asarray(th.misattribution_toy(rho, ratio))
    np.testing.assert_allclose(
        np.asarray(th.misattribution(stats))[:, 0, 0], expected, rtol=1e-10, atol=1e-12
    )
    assert np.all(np.abs(mis - expected) <= np.maximum(0.02 * np.abs(expected), 2e-3)), (
        mis,
        expected,
    )


@pytest.mark.slow
def test_overparametrized_late_fusion_generalizes_worse():
    """The setting of docs/theory.md §5 (Sigma = diag(3 I_50, I_50), w* = 0.1, noise 0.5),
    two-layer networks (width 16, entrywise init 1e-9) trained to convergence on the same samples:

    - n = 70 < d = 100: early fusion reaches the min-norm interpolant (E_g within 1 %), late
      fusion a different interpolant with clearly larger E_g (permanent unimodal bias), which
      the reduced dynamics predicts (within 2 %);
    - n = 700: both reach the same (OLS) solution."""
    from multimodal_dln.experiments.zhang2024 import entrywise_effective_scale, single_population

    pop = single_population()
    emp = [
        mdln.sample(jax.random.fold_in(jax.random.key(202310), n), pop, n).statistics()
        for n in (70, 700)
    ]
    stats = jax.tree.map(lambda a, b: jnp.stack([a, b]), *emp)
    final = {}
    for Lf in (1, 2):
        nets = eqx.filter_vmap(
            lambda k: mdln.FusionDLN.init(
                k,
                depth=2,
                fusion_layer=Lf,
                width=16,
                d_A=50,
                d_B=50,
                init_scale=1e-9,
                init="entrywise",
            )
        )(jax.random.split(jax.random.key(3), 2))
        traj = mdln.gradient_flow(nets, stats, t_max=jnp.full(2, 20_000.0), n_save=64)
        assert bool(jnp.all(traj.success)), traj.failure_reasons()
        final[Lf] = np.asarray(traj.weights[:, -1])
    eg = {Lf: np.asarray(th.generalization_error(jnp.asarray(final[Lf]), pop)) for Lf in (1, 2)}
    min_norm = np.asarray(th.early_fusion_final_error(stats, pop))
    np.testing.assert_allclose(eg[1][0], min_norm[0], rtol=0.01)
    assert eg[2][0] > eg[1][0] + 0.1, eg
    late = th.late_fusion_final_solution(
        emp[0], init_scale=entrywise_effective_scale(1e-9, 16), t_max=1e5
    )
    np.testing.assert_allclose(eg[2][0], float(th.generalization_error(late, pop)), rtol=0.02)
    # underparametrized: the same solution (OLS) for both
    np.testing.assert_allclose(final[1][1], final[2][1], atol=2e-3)
    np.testing.assert_allclose(eg[1][1], min_norm[1], rtol=0.01)
