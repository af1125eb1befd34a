"""The theory columns of a sweep: the closed form for every member's configuration, NaN where
none applies (docs/theory.md §2-§4).

- ``theory_time_ratio``: `theory.time_ratio_deep(stats, L, L_f, u0)` (docs/theory.md §3),
  which is exactly 1 for early fusion (L_f = 1), the two-layer formula 1 + (s_A - s_B) / g_B
  for late fusion (L_f = L, every L; for the toy data 1 + (r^2 - 1) / (1 - rho^2)) and the
  leading-order integral formula for 1 < L_f < L. NaN for depth 1 (no saddle) and where B is
  learned first (the phase definitions assume A first). For toy statistics this equals
  `theory.time_ratio_toy_network` (tests/test_sweeps.py).
- ``theory_misattribution``: `theory.misattribution(stats)` (docs/theory.md §4; rho / r on the
  toy data) for scalar modalities and output where a unimodal phase is predicted (L_f >= 2,
  A learned first); NaN otherwise.
- ``reduced_time_ratio`` (on request): t_B / t_A of the reduced balanced rank-one dynamics
  (`multimodal_dln.reduced_flow`, docs/theory.md §3) at the member's u0, the prediction for an
  aligned network; NaN where the member's run of it fails.
"""

from __future__ import annotations

import numpy as np

from .. import theory
from .._measurements import measure
from .._reduced_dynamics import reduced_flow
from .._status import Status

__all__ = ["reduced_time_ratio", "theory_columns"]


def theory_columns(structure: dict, stats, init_scale) -> dict[str, np.ndarray]:
    """``theory_time_ratio`` and ``theory_misattribution`` for a batch of members sharing
    `structure` (static axes), with batched `stats` and per-member `init_scale`."""
    L, Lf = structure["depth"], structure["fusion_layer"]
    n = len(init_scale)
    ratio, mis = np.full(n, np.nan), np.full(n, np.nan)
    if L < 2:
        return {"theory_time_ratio": ratio, "theory_misattribution": mis}
    a_first = np.asarray(theory.learned_first(stats)) == 0
    with np.errstate(all="ignore"):
        tr = np.asarray(theory.time_ratio_deep(stats, L, Lf, np.asarray(init_scale)), float)
    ratio = np.where(a_first, tr, np.nan)
    scalar = stats.sigma_yx.shape[-2:] == (1, 2) and stats.d_A == 1
    if scalar and Lf >= 2:
        m = np.asarray(theory.misattribution(stats), float).reshape(n, -1)[:, 0]
        uni = np.asarray(theory.has_unimodal_phase(stats, L, Lf))
        mis = np.where(a_first & uni, m, np.nan)
    return {"theory_time_ratio": ratio, "theory_misattribution": mis}


def reduced_time_ratio(structure: dict, stats, init_scale, n_save: int) -> np.ndarray:
    """t_B / t_A of the reduced dynamics per member (NaN where that run is not OK)."""
    n = len(init_scale)
    if structure["depth"] < 2 or stats.sigma_yx.shape[-2] != 1:
        return np.full(n, np.nan)
    traj = reduced_flow(
        stats,
        depth=structure["depth"],
        fusion_layer=structure["fusion_layer"],
        init_scale=np.asarray(init_scale),
        n_save=n_save,
    )
    meas = measure(traj, stats)
    ok = np.asarray(meas.status) == Status.OK
    return np.where(ok, np.asarray(meas.time_ratio), np.nan)
