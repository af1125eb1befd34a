"""Generalization error and the over-parametrized regime.

Zhang et al. 2024, generalization deficit and permanent unimodal bias in the over-parametrized
regime; docs/theory.md §5.
"""

from __future__ import annotations

from jaxtyping import Array, ArrayLike, Float

from .._reduced_dynamics import reduced_flow
from .._statistics import Statistics
from ._fixed_points import fixed_point_weights
from ._util import _f


def min_norm_solution(sample_stats: Statistics) -> Float[Array, "*batch o d"]:
    """W = Sigma_yx Sigma^+ of the *sample* statistics: the minimum-norm least-squares solution.

    Early fusion from vanishing initialization converges to it exactly (docs/theory.md §5;
    checked by simulation to 0.015): every layer-1 update is a combination of training inputs,
    so W^tot stays in their span. In the underparametrized regime (n >= d, Sigma full rank) it
    is the unique OLS solution, which late fusion reaches as well.
    """
    return sample_stats.optimal_weights()


def generalization_error(
    w_tot: Float[ArrayLike, "*batch o d"], population: Statistics
) -> Float[Array, "*batch"]:
    """E_g = 1/2 (W - w*) Sigma (W - w*)^T on the population statistics (Zhang et al. 2024,
    generalization error; docs/theory.md §5; label noise excluded, w* = population
    Sigma_yx Sigma^-1)."""
    return population.generalization_error(_f(w_tot))


def unimodal_generalization_error(
    sample_stats: Statistics, population: Statistics
) -> Float[Array, "*batch"]:
    """E_g at the sample unimodal fixed point M_A = (Sigma^_yxA Sigma^_A^+, 0) (docs/theory.md
    §5): 1/2 (W^_A^uni - w*_A, -w*_B) Sigma (.)^T. Population value 0.25 for the D = 100
    setting. (The authors' "E_g^uni = 0.467" at P = 70 is the early-stopping minimum, not this
    value.)"""
    return population.generalization_error(fixed_point_weights(sample_stats, "A"))


def early_fusion_final_error(
    sample_stats: Statistics, population: Statistics
) -> Float[Array, "*batch"]:
    """E_g of the solution early fusion converges to from small initialization: the min-norm
    interpolant `min_norm_solution(sample_stats)` (exact in the u0 -> 0 limit; docs/theory.md
    §5)."""
    return population.generalization_error(min_norm_solution(sample_stats))


def late_fusion_final_solution(
    sample_stats: Statistics,
    *,
    depth: int = 2,
    init_scale: float = 1e-9,
    direction: str = "drive",
    t_max: float | None = None,
    converge_rtol: float = 1e-10,
) -> Float[Array, "o d"]:
    """Numerical prediction of the interpolant late fusion converges to after a long unimodal
    phase (Zhang et al. 2024, permanent unimodal bias; docs/theory.md §5). **No closed form**:
    this integrates the exact balanced rank-one dynamics (`multimodal_dln.reduced_flow`, fusion
    at L_f = L; docs/theory.md §3) from per-layer scale u0 to convergence and returns its final
    [W_A^tot, W_B^tot].

    Why numerical: in the overparametrized regime (n < d, but n > d_A, d_B) every branch's update
    spans its whole input space, and the two branches are preconditioned by their own norms
    (tau dW_m/dt = e_m (||W_m|| I + W_m^T W_m / ||W_m||) for L = 2), so W^tot leaves the span of
    the training inputs and the interpolant reached depends on the whole path; the simple
    "sequential" guess (A's unimodal solution, then a min-norm fit of the residual) is refuted
    by simulation (||W_B|| 1.11 predicted vs 0.80 simulated; docs/theory.md §5).
    `direction="drive"` starts each branch along its initial drive Sigma_yxm (the u0 -> 0
    limit of a small random initialization, whose component along the drive outgrows the
    rest); "solution" starts along W* (the `aligned` network init). Compare with
    `min_norm_solution` (early fusion).
    """
    traj = reduced_flow(
        sample_stats,
        depth=depth,
        fusion_layer=depth,
        init_scale=init_scale,
        direction=direction,
        t_max=t_max,
        converge_rtol=converge_rtol,
    )
    return traj.weights[..., -1, :, :]
