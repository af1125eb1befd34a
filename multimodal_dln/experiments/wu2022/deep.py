"""Vanilla vs balanced training of deep fusion networks (Wu et al. 2022's algorithm on the deep
linear networks of Zhang et al. 2024; docs/theory.md §3, §6): L = 4, L_f in {2, 3, 4}, the
authors' deep Gaussian init (FusionDLN init="random", u0 = 0.1), 15 000 steps."""

from __future__ import annotations

from ... import greedy
from ..._constants import AUTHORS_LR
from ._common import WU2022_REFERENCE_DEEP, members, paired_batch, run_row

__all__ = ["deep_experiment"]


def deep_experiment(
    *,
    rhos=(0.5, 0.0),
    fusion_layers=(2, 3, 4),
    depth: int = 4,
    ratio: float = 2.0,
    Qs=(1, 5),
    alpha: float = 0.01,
    lr: float = AUTHORS_LR,
    width: int = 100,
    init_scale: float = 0.1,
    n_steps: int = 15_000,
    seed: int = 0,
):
    """Vanilla vs balanced for deep fusion networks (one vmapped run per L_f); one row per
    (L_f, rho, algorithm) with ``reference_t_A_steps`` / ``reference_t_B_steps`` from
    `WU2022_REFERENCE_DEEP` (depth 4)."""
    out = []
    for lf in fusion_layers:
        rows = members(rhos, Qs, alpha)
        net = dict(depth=depth, fusion_layer=lf, width=width, init_scale=init_scale, init="random")
        stats, nets, a, q = paired_batch(rows, ratio, seed, **net)
        run = greedy.train(
            nets, stats, lr=lr, n_steps=n_steps, algorithm="balanced", alpha=a, Q=q, n_save=100
        )
        for i, r in enumerate(rows):
            r["fusion_layer"] = lf
            r.update(run_row(run, i, lr))
            ref = WU2022_REFERENCE_DEEP.get((r["rho"], lf, r["Q"])) if depth == 4 else None
            r["reference_t_A_steps"], r["reference_t_B_steps"] = ref if ref else (None, None)
        out.extend(rows)
    return out
