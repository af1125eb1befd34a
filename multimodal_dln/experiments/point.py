"""One toy configuration for N seeds (what `mdln simulate` reports): members, theory, summary.

`simulate_point` validates the settings (errors name the caller's parameters), simulates the
seeds as one batched solve on the sweep engine (`multimodal_dln.sweeps`) and returns the
members' records, the theory for the point with where it comes from (docs/theory.md §2-§4)
or why there is none, and a summary over the successful seeds (docs/theory.md §7).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .. import sweeps, theory
from .settings import default_init_scale, validate_grid, validate_settings
from .summary import failures, median

__all__ = ["PHASE_KEYS", "PointResult", "member_record", "point_theory", "simulate_point"]

PHASE_KEYS = ("t_A", "t_B", "time_ratio", "misattribution", "plateau_loss")
U0_NOTE = (
    "valid as u0 -> 0; at the paper's u0 = 0.1 aligned networks differ from it by ~3.5-6.6 %, "
    "random init comes out ~18 % below it"
)


@dataclass
class PointResult:
    """What `simulate_point` returns: the JSON document (config, members, summary), the
    theory for the point, and the validated settings."""

    config: dict
    members: list[dict]
    summary: dict
    theory: dict
    settings: dict
    wall_time_s: float

    def document(self) -> dict:
        return {"config": self.config, "members": self.members, "summary": self.summary}


def member_record(row) -> dict:
    """One member for the table / JSON: status NAME and reason; phase values only when OK."""
    rec = {k: row[k] for k in ("seed", *PHASE_KEYS, "final_loss", "success", "status", "reason")}
    rec |= {"t_end": row["t_end"], "num_steps": row["num_steps"]}
    if not row["success"]:
        rec |= dict.fromkeys(PHASE_KEYS, math.nan)  # never a plausible number for a failure
    return rec


def point_theory(depth, fusion_layer, rho, ratio, init_scale) -> dict:
    """The time-ratio and misattribution theory for one toy point, with where it comes from
    (`source`) or why there is none (`none`)."""
    value = theory.time_ratio_toy_network(depth, fusion_layer, rho, ratio, init_scale)
    out = {
        "value": value,
        "misattribution": theory.misattribution_toy_network(depth, fusion_layer, rho, ratio),
        "source": None,
        "note": None,
        "none": None,
    }
    if depth == 1:
        out["none"] = "none for depth 1 (a one-layer network converges linearly; no unimodal phase)"
    elif ratio < 1:
        out["none"] = "none here for ratio < 1 (B is learned first; swap the modalities)"
    elif not math.isfinite(value):
        out["none"] = "none here"
    elif fusion_layer == 1:
        out["source"] = "early fusion: no unimodal phase"
    elif fusion_layer == depth:
        out["source"] = "late fusion: 1 + (r^2 - 1)/(1 - rho^2)"
    else:
        out["source"] = (
            "intermediate fusion: leading-order deep formula, theory.time_ratio_deep_toy"
        )
        out["note"] = U0_NOTE
    return out


def _summary(rows, th, wall) -> dict:
    ok_rows = [r for r in rows if r["success"]]
    tr_med = median([r["time_ratio"] for r in ok_rows])
    value = th["value"] if th["none"] is None else math.nan
    rel = tr_med / value - 1.0 if math.isfinite(value) and math.isfinite(tr_med) else None
    return {
        "time_ratio_median": tr_med,
        "time_ratio_theory": value,
        "time_ratio_theory_source": th["source"],
        "time_ratio_theory_note": th["note"] or th["none"],
        "misattribution_median": median([r["misattribution"] for r in ok_rows]),
        "misattribution_theory": th["misattribution"],
        "n_success": len(ok_rows),
        "n_members": len(rows),
        "failures": failures(rows),
        "rel_error_median": rel,
        "wall_time_s": wall,
    }


def simulate_point(
    *,
    depth: int,
    fusion_layer: int | None,
    width: int,
    rho: float,
    ratio: float,
    init_scale: float | None,
    seeds: int,
    init: str,
    method: str,
    lr: float,
    noise: float,
    t_max: float | None,
    names: Mapping[str, str] | None = None,
) -> PointResult:
    """Simulate seeds 0..seeds-1 of one toy point (L_f default: depth, late fusion; u0
    default: `default_init_scale(depth)`)."""
    lf = depth if fusion_layer is None else fusion_layer
    u0 = default_init_scale(depth) if init_scale is None else init_scale
    s = validate_settings(
        depth=depth, width=width, init=init, method=method, lr=lr, noise=noise, t_max=t_max,
        names=names,
    )  # fmt: skip
    grid = validate_grid(
        {"fusion_layer": [lf], "rho": [rho], "ratio": [ratio], "init_scale": [u0]}, depth, names
    )
    point = {k: v[0] for k, v in grid.items()}
    t0 = time.perf_counter()
    sweep = sweeps.product(
        **point,
        **s,  # the normalized settings: depth, width, init, method, lr, noise, t_max
        seed=range(seeds),
    )
    rows = sweeps.run(sweep, progress=False).to_dict("records")
    wall = time.perf_counter() - t0
    th = point_theory(depth, lf, rho, ratio, u0)
    config = {
        "depth": s["depth"],
        "fusion_layer": lf,
        "width": s["width"],
        "rho": rho,
        "ratio": ratio,
        "init_scale": u0,
        "seeds": seeds,
        "init": s["init"],
        "noise": s["noise"],
        "method": s["method"],
        "lr": s["lr"],
        "t_max": s["t_max"],
        "data": "toy",
        "time_units": "gradient-flow time (tau = 1); for gd, steps x lr",
    }
    members = [member_record(r) for r in rows]
    return PointResult(config, members, _summary(rows, th, wall), th, s, wall)
