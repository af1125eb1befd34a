"""The toy-data predictions for a given network structure (L, L_f), NaN where no closed form
applies: the theory columns of the parameter sweeps (docs/theory.md §2-§4).

Plain NumPy in and out (vectorized, broadcasting; `depth` and `fusion_layer` may vary too), a
Python float for scalar arguments.
"""

from __future__ import annotations

import numpy as np

from ._deep import time_ratio_deep_toy
from ._misattribution import misattribution_toy
from ._two_layer import time_ratio_toy


def time_ratio_toy_network(depth, fusion_layer, rho, ratio, init_scale=None):
    """Leading-order t_B / t_A on the toy data, NaN where no theory applies.

    - depth 1: NaN (a one-layer network converges linearly: no saddle, no unimodal phase);
    - ratio r < 1: NaN (B is learned first; the formulas and `measure` assume A first);
    - L_f = 1 (early fusion, L >= 2): exactly 1 (no unimodal phase, docs/theory.md §2);
    - L_f = L (late fusion, L >= 2): 1 + (r^2 - 1) / (1 - rho^2) (`time_ratio_toy`,
      docs/theory.md §2);
    - 1 < L_f < L (intermediate fusion): the leading-order deep formula
      `time_ratio_deep_toy(L, L_f, rho, r, u0)` (docs/theory.md §3; valid as u0 -> 0, so NaN
      without `init_scale`). At u0 = 0.1, aligned networks differ from it by ~3.5-6.6 % and
      random init comes out ~18 % below it (docs/theory.md §3, aligned vs random init).

    `time_ratio_deep_toy` itself gives the same values for L_f = L (the closed form) and
    L_f = 1 (exactly 1). Vectorized over NumPy arrays (broadcasting; depth and fusion_layer
    may vary too); returns a float or an array.
    """
    u0 = np.nan if init_scale is None else init_scale
    depth, fusion_layer, rho, ratio, u0 = np.broadcast_arrays(
        np.asarray(depth, float),
        np.asarray(fusion_layer, float),
        np.asarray(rho, float),
        np.asarray(ratio, float),
        np.asarray(u0, float),
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        late = np.asarray(time_ratio_toy(rho, ratio), dtype=float)
    valid = (depth >= 2) & (ratio >= 1.0) & (np.abs(rho) < 1.0)
    out = np.full(rho.shape, np.nan)
    out = np.where(valid & (fusion_layer == depth), late, out)
    out = np.where(valid & (fusion_layer == 1), 1.0, out)
    mid = valid & (fusion_layer > 1) & (fusion_layer < depth) & (u0 > 0) & np.isfinite(u0)
    if np.any(mid):
        out = out.copy()
        _fill_intermediate(out, mid, depth, fusion_layer, rho, ratio, u0)
    return float(out) if out.ndim == 0 else out


def _fill_intermediate(out, mask, depth, fusion_layer, rho, ratio, u0) -> None:
    """`time_ratio_deep_toy` into `out[mask]`, one call per (L, L_f) pair (they are static
    arguments there)."""
    for L, Lf in {(int(a), int(b)) for a, b in zip(depth[mask], fusion_layer[mask], strict=True)}:
        sel = mask & (depth == L) & (fusion_layer == Lf)
        out[sel] = np.asarray(
            time_ratio_deep_toy(L, Lf, rho[sel], ratio[sel], u0[sel]), dtype=float
        )


def misattribution_toy_network(depth, fusion_layer, rho, ratio, init_scale=None):
    """W_A^tot(t_uni) - W_A^tot(inf) = rho / r on the toy data (`misattribution_toy`,
    docs/theory.md §4), where a unimodal phase is predicted (L_f >= 2 and r > 1); NaN otherwise
    (early fusion, or r <= 1). `init_scale` is accepted for symmetry with
    `time_ratio_toy_network` (unused)."""
    del init_scale
    depth, fusion_layer, rho, ratio = np.broadcast_arrays(
        np.asarray(depth),
        np.asarray(fusion_layer),
        np.asarray(rho, float),
        np.asarray(ratio, float),
    )
    mis = np.asarray(misattribution_toy(rho, ratio), dtype=float)
    out = np.where((fusion_layer >= 2) & (ratio > 1.0), mis, np.nan)
    return float(out) if out.ndim == 0 else out
