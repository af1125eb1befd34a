"""Closed-form results of Zhang, Latham & Saxe (2024), vectorized and in float64.

Every function is pure and works under `jax.jit` / `jax.vmap`: array arguments (statistics,
rho, ratio, u0, ...) may be batched; structural integers (`depth` L, `fusion_layer` L_f) are
Python ints. Unless a docstring says otherwise results are *leading order* in the
initialization scale u0 -> 0 (u0 is the per-layer scale: W^tot(0) ~ u0^L), in gradient-flow
time with tau = 1 (for gradient descent, t = epochs x lr; docs/theory.md §1, §7). The full
paper text was not available when this was written, so docstrings name the paper's results by
topic (and the authors' code function where there is one) and point to the derivation in
docs/theory.md.

Notation (docs/theory.md §1): s_m = ||Sigma_yxm||, W_A^uni = Sigma_yxA Sigma_A^-1,
g_B = ||Sigma_yxB - W_A^uni Sigma_AB||, k_s = s_B / s_A; modality A is the one learned first.

Sign convention for scalar modalities and output (docs/theory.md §2, "sign convention"): the
norms are replaced by *signed* projections. Modality A is oriented along Sigma_yxA (so
s_A = |Sigma_yxA| and the phase-1 fixed point is |W_A^uni|), modality B along the direction it
must finally reach, sign(g_B) = sign(W*_B) (g_B = W*_B (Sigma_B - Sigma_BA Sigma_A^-1 Sigma_AB),
so the two signs agree), giving s_B = Sigma_yxB sign(W*_B), which is negative when B's initial
drive points away from its final value (toy: rho < -1/ratio). This is the authors' `lag_depth`
plug-in (s_A = r^2 + rho r, s_B = 1 + rho r) and agrees with simulation where the norm form
does not. For vector modalities the norm form is used; it is only approximate there (see
`time_ratio_two_layer`).

Modules (all private, re-exported here): `_fixed_points` (fixed points, plateau losses, drives,
which modality is learned first; docs/theory.md §2), `_two_layer` (two-layer late fusion;
§2), `_deep` (deep and intermediate fusion; §3), `_misattribution` (misattribution and
superficial preference; §4), `_generalization` (§5), `_toy` (toy-data predictions per
network structure, NaN where no closed form applies), `_weight_decay` (weight decay: final
solutions, late fusion's threshold, phase times; beyond the paper, §8), `_imbalance`
(unbalanced starts: two-layer late fusion's phase times with a per-modality imbalance; beyond the
paper, §9) and `_minibatch` (how much later minibatch SGD learns the first modality; beyond
the paper, §10). The reduced rank-one dynamics these formulas are the u0 -> 0 limit of is an
ODE, exported at top level (`multimodal_dln.reduced_flow`, docs/theory.md §3), not here.
"""

from ._deep import (
    partner_scale,
    phase_times_deep,
    time_ratio_deep,
    time_ratio_deep_from_drives,
    time_ratio_deep_toy,
    unimodal_integral,
)
from ._fixed_points import (
    Drives,
    drives,
    drives_toy,
    fixed_point_loss,
    fixed_point_weights,
    has_unimodal_phase,
    learned_first,
    orient_first_learned,
    plateau_loss,
    plateau_loss_ratio_toy,
    swap_modalities,
)
from ._generalization import (
    early_fusion_final_error,
    generalization_error,
    late_fusion_final_solution,
    min_norm_solution,
    unimodal_generalization_error,
)
from ._imbalance import (
    imbalanced_log_scale,
    phase_times_imbalanced,
    time_ratio_imbalanced,
    two_layer_scales,
)
from ._minibatch import sgd_slowdown_two_layer
from ._misattribution import (
    contribution_boundary,
    misattribution,
    misattribution_toy,
    prioritization_boundary,
    superficial_preference,
)
from ._modalities import phase_times_modalities
from ._toy import misattribution_toy_network, time_ratio_toy_network
from ._two_layer import (
    learning_time_two_layer,
    phase_times_two_layer,
    time_ratio_toy,
    time_ratio_two_layer,
    time_ratio_two_layer_gd,
)
from ._weight_decay import (
    phase_times_weight_decay,
    time_ratio_weight_decay,
    time_ratio_weight_decay_toy,
    weight_decay_solution,
    weight_decay_solution_toy,
    weight_decay_threshold,
    weight_decay_threshold_toy,
)

__all__ = [
    # fixed points and losses (docs/theory.md §2)
    "fixed_point_weights",
    "fixed_point_loss",
    "plateau_loss",
    "plateau_loss_ratio_toy",
    # drives (§1-§3)
    "Drives",
    "drives",
    "drives_toy",
    "learned_first",
    "has_unimodal_phase",
    # two-layer late fusion (§2)
    "time_ratio_toy",
    "time_ratio_two_layer",
    "time_ratio_two_layer_gd",
    "sgd_slowdown_two_layer",
    "learning_time_two_layer",
    "phase_times_two_layer",
    # deep / intermediate fusion (§3)
    "partner_scale",
    "unimodal_integral",
    "phase_times_deep",
    "time_ratio_deep",
    "time_ratio_deep_toy",
    "time_ratio_deep_from_drives",
    # misattribution and superficial preference (§4)
    "misattribution_toy",
    "misattribution",
    "prioritization_boundary",
    "contribution_boundary",
    "superficial_preference",
    # generalization and the over-parametrized regime (§5)
    "min_norm_solution",
    "generalization_error",
    "unimodal_generalization_error",
    "early_fusion_final_error",
    "late_fusion_final_solution",
    # toy data per network structure, NaN where no closed form applies (§2-§4)
    "time_ratio_toy_network",
    "misattribution_toy_network",
    # weight decay, beyond the paper (§8)
    "weight_decay_solution",
    "weight_decay_solution_toy",
    "weight_decay_threshold",
    "weight_decay_threshold_toy",
    "phase_times_weight_decay",
    "time_ratio_weight_decay",
    "time_ratio_weight_decay_toy",
    # unbalanced starts, beyond the paper (§9)
    "imbalanced_log_scale",
    "phase_times_imbalanced",
    "time_ratio_imbalanced",
    "two_layer_scales",
    # M >= 2 modalities, beyond the papers (§11)
    "phase_times_modalities",
    # helpers
    "swap_modalities",
    "orient_first_learned",
]
