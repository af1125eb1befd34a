"""One batched solve of sweep members sharing a structure, and its table rows.

The method is one of the library's integrators (gradient flow, gradient descent, the reduced
dynamics), called once on the whole chunk; `measure` gives phase times and a `Status` per
member (docs/theory.md §7). A member whose status is not OK has empty (NaN) phase columns.

Gradient descent with an automatic horizon: each member's step budget is its own
gradient-flow horizon estimate / lr rounded up to a power of two (`gd_budget`), and members
not converged within it are run again with 8x and 64x that budget, keeping each member's first
converged run, so a member's result depends on its own values only (not on the grid it was
swept in).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._gradient_descent import gradient_descent, pow2_steps
from .._gradient_flow import gradient_flow
from .._measurements import measure
from .._reduced_dynamics import reduced_flow
from .._status import Status, describe
from .._training import horizon_at_scale
from ._axes import AXIS_NAMES
from ._build import build_inputs
from ._theory import reduced_time_ratio, theory_columns

__all__ = ["GD_RERUN_FACTORS", "PHASE_COLUMNS", "RESULT_COLUMNS", "gd_budget", "predicted_cost",
           "solve_chunk"]  # fmt: skip

RESULT_COLUMNS = (
    "t_A", "t_B", "time_ratio", "misattribution", "plateau_loss", "final_loss", "success",
    "status", "reason", "t_end", "num_steps", "theory_time_ratio", "theory_misattribution",
    "rel_error",
)  # fmt: skip
PHASE_COLUMNS = ("t_A", "t_B", "time_ratio", "misattribution", "plateau_loss", "rel_error")
"""Columns that are NaN (an empty cell) for every member whose status is not OK."""

_FLOAT_OUT = ("t_A", "t_B", "time_ratio", "misattribution", "plateau_loss", "final_loss", "t_end")
GD_RERUN_FACTORS = (8, 64)
GD_MAX_STEPS = 2**20


def predicted_cost(structure: dict, members, user=None) -> np.ndarray:
    """Each member's estimated gradient-flow horizon (docs/theory.md §7) from its statistics
    and u0: the sort key that puts members of similar duration into one chunk."""
    _, stats, _, v = build_inputs({**structure, "method": "reduced"}, members, user)
    return np.asarray(_horizons(stats, jnp.asarray(v["init_scale"]), structure["depth"]))


@eqx.filter_jit
def _horizons(stats, u0, depth: int):
    return jax.vmap(lambda s, u: horizon_at_scale(s, u, depth))(stats, u0)


def gd_budget(horizon: float, lr: float) -> int:
    """A member's GD step budget: horizon / lr rounded up to a power of two (<= 2^20)."""
    return pow2_steps(float(horizon) / float(lr))


def _run(structure, members, user, n_steps, shard):
    objective, stats, nets, v = build_inputs(structure, members, user)
    method, n_save = structure["method"], structure["n_save"]
    t_max = None if structure["auto_horizon"] else jnp.asarray(v["t_max"])
    if method == "flow":
        traj = gradient_flow(
            nets, objective, t_max=t_max, n_save=n_save, rtol=structure["rtol"], shard=shard
        )
    elif method == "gd":
        traj = gradient_descent(
            nets, objective, lr=jnp.asarray(v["lr"]), n_steps=n_steps, n_save=n_save,
            on_divergence="ignore", shard=shard,
        )  # fmt: skip
    else:
        traj = reduced_flow(
            stats,
            depth=structure["depth"],
            fusion_layer=structure["fusion_layer"],
            init_scale=jnp.asarray(v["init_scale"]),
            t_max=t_max,
            n_save=n_save,
            rtol=structure["rtol"],
        )
    return traj, measure(traj, stats), stats, v


def _pick(mask, new, old):
    return jax.tree.map(
        lambda a, b: np.where(mask.reshape(mask.shape + (1,) * (np.ndim(a) - 1)), a, b), new, old
    )


def solve_chunk(structure, members, user=None, *, n_steps=None, shard="auto",
                reduced: bool = False) -> list[dict]:  # fmt: skip
    """Solve `members` (sharing `structure`) as one batch; one row per member."""
    traj, meas, stats, v = _run(structure, members, user, n_steps, shard)
    out = _measured(traj, meas)
    if structure["method"] == "gd" and structure["auto_horizon"]:
        for factor in GD_RERUN_FACTORS:
            todo = out["code"] == Status.NOT_CONVERGED
            if not todo.any() or n_steps * factor > GD_MAX_STEPS * 64:
                break
            t2, m2, _, _ = _run(structure, members, user, n_steps * factor, shard)
            out = _pick(todo, _measured(t2, m2), out)
    theory = theory_columns(structure, stats, v["init_scale"])
    if reduced:
        theory["reduced_time_ratio"] = reduced_time_ratio(
            structure, stats, v["init_scale"], structure["n_save"]
        )
    return _rows(structure["method"], members, out, theory)


def _measured(traj, meas) -> dict[str, np.ndarray]:
    n = np.shape(meas.status)[0]
    return {
        "code": np.asarray(meas.status),
        "t_A": np.asarray(meas.t_A),
        "t_B": np.asarray(meas.t_B),
        "time_ratio": np.asarray(meas.time_ratio),
        "misattribution": np.asarray(meas.misattribution).reshape(n, -1)[:, 0],
        "plateau_loss": np.asarray(meas.plateau_loss),
        "final_loss": np.asarray(meas.final_loss),
        "t_end": np.asarray(traj.t_end),
        "num_steps": np.asarray(traj.num_steps),
    }


def _rows(method, members, out, theory) -> list[dict]:
    rows = []
    for i, m in enumerate(members):
        code = int(out["code"][i])
        ok = code == Status.OK
        th = float(theory["theory_time_ratio"][i])
        tr = float(out["time_ratio"][i])
        row = {n: m[n] for n in AXIS_NAMES}
        row.update({c: float(out[c][i]) for c in _FLOAT_OUT})
        row.update(
            success=ok,
            status=Status(code).name,
            reason=describe(code, method),
            num_steps=int(out["num_steps"][i]),
            theory_time_ratio=th,
            theory_misattribution=float(theory["theory_misattribution"][i]),
            rel_error=tr / th - 1.0 if math.isfinite(th) and math.isfinite(tr) else math.nan,
        )
        if "reduced_time_ratio" in theory:
            row["reduced_time_ratio"] = float(theory["reduced_time_ratio"][i])
        if not ok:
            row.update(dict.fromkeys(PHASE_COLUMNS, math.nan))
        rows.append(row)
    return rows
