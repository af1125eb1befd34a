"""Per-member status codes: why a run or a measurement is not a success.

Every batched solve (`gradient_flow`, `gradient_descent`, `reduced_dynamics`) returns one status
per member in `Trajectory.status`, and `measure` adds the checks of the phase-time measurement in
`PhaseMeasurements.status`. A member is a success exactly when its status is `Status.OK`; the
phase times of any other member are NaN. `describe(code, method)` gives a one-line reason with
the remedy that exists for that method.

Codes are small integers (an `Int[Array, "*batch"]` under `jit`/`vmap`); when several apply, the
first in the order below (the earliest cause) is reported.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Status", "describe", "status_names"]


class Status(enum.IntEnum):
    """Why a member failed (`OK`: it did not)."""

    OK = 0
    INVALID_INPUT = 1
    NON_FINITE = 2
    DIVERGED = 3
    STEP_BUDGET = 4
    NOT_CONVERGED = 5
    MODALITY_NOT_LEARNED = 6
    NO_CROSSING = 7
    CROSSING_UNRESOLVED = 8
    ORDER_REVERSED = 9


_REASONS = {
    Status.OK: "ok",
    Status.INVALID_INPUT: "invalid input for this member (non-finite or non-PSD statistics, "
    "or an invalid value given under jit/vmap); check this member's arguments",
    Status.NON_FINITE: "non-finite values (NaN/inf) in the solution",
    Status.DIVERGED: "gradient descent diverged: lr is above the stability limit "
    "(multimodal_dln.stable_lr_estimate); lower lr",
    Status.STEP_BUDGET: "step budget exhausted before convergence; raise max_steps",
    Status.NOT_CONVERGED: "did not converge by the horizon; raise t_max",
    Status.MODALITY_NOT_LEARNED: "modality B is not learned by the end of the run (its final "
    "weight is below half its target ||W*_B||, with weight decay its regularized value, or "
    "the target is zero, as for late fusion above the weight-decay threshold): no phase time to "
    "measure; if the loss converged first (a weak modality adds little loss), lower "
    "converge_rtol",
    Status.NO_CROSSING: "a phase threshold is not crossed inside (0, t_end] (the norm starts "
    "above it, or never reaches it)",
    Status.CROSSING_UNRESOLVED: "a crossing is not resolved by the save grid (the bracketing "
    "save interval is too long relative to the crossing time); lower t_min_fraction or t_max, "
    "or raise n_save",
    Status.ORDER_REVERSED: "the modalities are learned in the other order than the definitions "
    "assume (B is the stronger modality, ||Sigma_yxB|| > ||Sigma_yxA||: relabel A and B; or B "
    "crossed before A where a unimodal phase is predicted)",
}

_GD_REMEDIES = {
    Status.NOT_CONVERGED: "did not converge within the step budget n_steps; raise n_steps "
    "(or t_max, which sets n_steps = t_max / lr)",
    Status.STEP_BUDGET: "did not converge within the step budget n_steps; raise n_steps",
}


_SGD_REMEDIES = {
    **_GD_REMEDIES,
    Status.NOT_CONVERGED: "did not converge within the step budget n_steps; raise n_steps, or, "
    "with label noise (SGD then stays a noise floor above L*), raise converge_rtol",
}


def describe(code, method: str = "flow") -> str:
    """One-line reason (with the remedy) for a status code; `method` "flow", "gd", "sgd" or
    "reduced"."""
    code = Status(int(code))
    remedies = {"gd": _GD_REMEDIES, "sgd": _SGD_REMEDIES}.get(method, {})
    return remedies.get(code, _REASONS[code])


def status_names(codes) -> list[str]:
    """Names ("OK", "NOT_CONVERGED", ...) for an array of status codes, flattened."""
    return [Status(int(c)).name for c in np.atleast_1d(np.asarray(codes)).ravel()]
