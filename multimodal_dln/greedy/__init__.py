"""Greedy multimodal learning (Wu et al., ICML 2022) on fusion networks: the diagnostics, the
balanced-learning schedule, the discrete trainer and its continuous-time counterpart.
Definitions and the mapping onto deep linear networks: docs/theory.md §6; usage and results:
docs/greedy.md.

**Conditional utilization rate** (Wu et al. 2022). With f_i the prediction of branch i and f_i'
the same branch with its *cross-modal input replaced by its training mean* (so f_i' sees m_i
only),

    u(m1|m0) = (A(f_0) - A(f_0')) / A(f_0),   u(m0|m1) = (A(f_1) - A(f_1')) / A(f_1),
    d_util   = u(m1|m0) - u(m0|m1),

A(.) a performance measure (accuracy in the paper). Always u <= 1; d_util lies in [-1, 1]
whenever both u >= 0 (not in general).

**Conditional learning speed** (Wu et al. 2022; the authors' ``compute_BDR``). Per parameter
group μ(θ) = Σ_p ||∇_p L||² / Σ_p ||p||² (a ratio of sums), accumulated over regular steps into
M(θ) = Σ μ (never reset), and

    s(m1|m0) = log10(M(θ'_0) / M(θ_0)),  s(m0|m1) = log10(M(θ'_1) / M(θ_1)),
    d_speed  = s(m1|m0) - s(m0|m1).

θ_i are branch i's own parameters and θ'_i the "bypass" carrying the other modality into
branch i.

**Which network part is what** (docs/theory.md §6):

- Modality roles: **A plays m0 and B plays m1** throughout. In the toy data A is the strong
  modality, learned first, so a vanilla run has d_util < 0 and d_speed < 0.
- Single-head `FusionDLN`. There are no per-branch heads: f_0 = f_1 = f. The "cross-modal
  input of branch 0" is B's fused contribution W_B^{L_f} h_B (h_B the pre-fusion
  representation of B), and symmetrically for branch 1, so f_0' = f_A-only and f_1' = f_B-only.
  Groups: θ_A = B-free path of A = ``branch_A`` + ``fusion_A``, θ_B likewise; the shared
  post-fusion layers are in no group. θ_0 = θ'_1 = θ_A and θ_1 = θ'_0 = θ_B, hence
  s(m0|m1) = -s(m1|m0) and **d_speed = 2 log10(M_B / M_A)**.
- Two-head `TwoHeadFusionNet`: θ_i = branch i's layers and head, θ'_i = the cross-connections
  into branch i.

**Closed forms** for linear networks on (centred, Gaussian) `Statistics`. The training mean of
any hidden representation is then 0, so f_i' has the cross-terms into branch i removed and every
A(.) is a function of effective weights:

- ``metric="r2"``: R²(W) = 1 - 2 L(W) / tr Σ_yy = 1 - E||y - W x||² / E||y||², the fraction of
  target variance explained (label noise included).
- ``metric="sign_accuracy"``: binary labels y = sign(w* x), w* = Σ_yx Σ_xx^+ (scalar output):
  P(W) = 1 - arccos(W Σ w*ᵀ / sqrt(W Σ Wᵀ · w* Σ w*ᵀ)) / π (Sheppard), 1/2 for W = 0.

On a `Dataset` (any network, ReLU included) the same quantities are measured on samples: the
training means of the cross-terms come from a training set, A(.) is R² or accuracy on a test
set.

**Balanced multimodal learning** (Wu et al. 2022; the authors' ``Bias_Mitigation_Strong``).
Training alternates *regular* steps and *re-balancing* steps that care for one modality k:

- On every warm-up or regular step the per-group μ of the (regular) gradient is added to the
  accumulators M, and d_speed is recomputed. Re-balancing steps never add to M, and d_speed is
  not recomputed inside a re-balancing window.
- After a regular step that is not in the warm-up, if |d_speed| > α the next **Q** steps
  re-balance, caring for k = 0 (m0 = A) if d_speed > α, k = 1 (m1 = B) if d_speed < -α. The
  triggering step itself was a regular step; after the window the next step is regular again
  and may trigger at once, so with |d_speed| > α throughout the duty cycle is Q/(Q+1).
- A re-balancing step for k replaces branch k's cross-modal input by its detached running mean
  (the mean over all earlier training forward passes, current batch included; 0 for linear
  networks on centred statistics). Branch k's prediction is then invariant to m_{1-k} and the
  blocked parameters (`blocked_selector`) get exactly zero gradient. Their optimizer *updates*
  are zeroed as well (`masked_updates`), so they stay fixed under momentum, Adam or weight
  decay.

With a single head a re-balancing step for k is a step on the unimodal-k loss: only k's path
and the shared layers learn.

**Random variant**: after the warm-up each step independently picks one of {regular, care 0,
care 1} with probability 1/3 for the next step. The accumulators are kept (on regular steps)
only as a diagnostic; they drive nothing.

**Discrete loop** `train` (optax, vmapped; saves summaries on a step grid plus exact per-step
counters) and its **continuous counterpart** `balanced_flow` (the duty-cycle-averaged hybrid
flow with diffrax events). Modes are encoded as integers: `REGULAR` (0), `CARE_0` (1, care for
m0 = A) and `CARE_1` (2, care for m1 = B).

All diagnostics are pure and vectorize with `jax.vmap` / `eqx.filter_vmap`.
"""

from ._diagnostics import (
    GROUPS as GROUPS,
    METRICS as METRICS,
    MODALITY_ROLES as MODALITY_ROLES,
    Utilization as Utilization,
    blocked_selector as blocked_selector,
    conditional_speeds as conditional_speeds,
    cross_means as cross_means,
    group_selectors as group_selectors,
    head_outputs as head_outputs,
    head_weights as head_weights,
    mu as mu,
    n_heads as n_heads,
    performance as performance,
    sample_performance as sample_performance,
    utilization as utilization,
    utilization_curve as utilization_curve,
    utilization_from_weights as utilization_from_weights,
)
from ._flow import (
    FlowRun as FlowRun,
    balanced_flow as balanced_flow,
)
from ._schedule import (
    ALGORITHMS as ALGORITHMS,
    CARE_0 as CARE_0,
    CARE_1 as CARE_1,
    REGULAR as REGULAR,
    masked_updates as masked_updates,
    mode_loss as mode_loss,
    schedule_modes as schedule_modes,
    scheduler_update as scheduler_update,
)
from ._trainer import (
    GreedyRun as GreedyRun,
    train as train,
)
