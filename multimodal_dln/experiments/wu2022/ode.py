"""The discrete balanced loop against its continuous-time counterpart, the duty-cycle-averaged
hybrid ODE (`multimodal_dln.greedy.balanced_flow`; docs/theory.md §6), on the toy settings of
`greedy-toy`: t_A, t_B of both and their relative differences."""

from __future__ import annotations

from ... import greedy
from ._common import ToySetting, finite_or_none, step_or_none

__all__ = ["ode_experiment"]


def _ode_row(run, flow, i, lr) -> dict:
    d_A, d_B = step_or_none(run.t_A_step[i]), step_or_none(run.t_B_step[i])
    f_A, f_B = finite_or_none(flow.t_A[i] / lr), finite_or_none(flow.t_B[i] / lr)
    return {
        "discrete_t_A_steps": d_A,
        "discrete_t_B_steps": d_B,
        "ode_t_A_steps": f_A,
        "ode_t_B_steps": f_B,
        "rel_diff_t_A": None if d_A is None or f_A is None else f_A / d_A - 1,
        "rel_diff_t_B": None if d_B is None or f_B is None else f_B / d_B - 1,
        "ode_switches": int(flow.n_switches[i]),
        "ode_ok": bool(flow.ok[i]),
    }


def ode_experiment(
    setting: ToySetting = ToySetting(),
    *,
    n_steps: int = 25_000,
    t_max: float | None = None,
    gd_correction: bool = True,
):
    """Discrete loop vs the duty-cycle-averaged hybrid ODE on the toy configurations.

    Returns `(rows, run, flow)` with t_A, t_B of both (steps; the ODE's time / lr) and their
    relative differences.
    """
    rows, stats, nets, a, q = setting.batch()
    lr = setting.lr
    run = greedy.train(
        nets, stats, lr=lr, n_steps=n_steps, algorithm="balanced", alpha=a, Q=q, n_save=100
    )
    flow = greedy.balanced_flow(
        nets,
        stats,
        lr=lr,
        t_max=t_max or n_steps * lr,
        algorithm="balanced",
        alpha=a,
        Q=q,
        gd_correction=gd_correction,
    )
    for i, r in enumerate(rows):
        r.update(_ode_row(run, flow, i, lr))
    return rows, run, flow
