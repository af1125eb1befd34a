"""Built inputs of a sweep without solving it: the engine's one batch builder for callers that
integrate themselves (e.g. figures that need whole trajectories; docs/sweeps.md).

`inputs(sweep)` resolves the members (`Sweep.members`: defaults, checks, repeats dropped), groups
them by their static axes exactly as `run` does (one compiled build per structure) and returns,
per structure, the members in sweep order with their positions, the objective each is trained
on, its statistics and the networks (`_build.build_inputs`: the toy data and random covariances
of docs/theory.md §1, networks drawn with the seed policy of `multimodal_dln._seeding`). A
member's inputs are the ones `run` solves for it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._axes import STATIC_AXES
from ._build import build_inputs
from ._spec import Sweep

__all__ = ["Inputs", "inputs"]


class Inputs(NamedTuple):
    """The built inputs of the members of a sweep that share one static structure.

    - `structure`: the static axes (data kind and sizes, depth, fusion layer, width, init,
      activation, method, rtol, n_save) shared by the group;
    - `members`: the resolved members (every axis, as in the results table), in sweep order;
    - `index`: their positions in `Sweep.members()`;
    - `objective`: what each member is trained on (`Statistics`, or a `Dataset` for a supplied
      dataset), batched along the leading axis;
    - `stats`: their statistics (the sample statistics of a `Dataset`);
    - `nets`: the batched `FusionDLN` networks (None for ``method="reduced"``).
    """

    structure: dict[str, Any]
    members: list[dict[str, Any]]
    index: np.ndarray
    objective: Any
    stats: Any
    nets: Any


def inputs(sweep: Sweep) -> list[Inputs]:
    """The built inputs of every member of `sweep`, one `Inputs` per static structure (in order
    of first appearance), without solving anything."""
    if not isinstance(sweep, Sweep):
        kind = type(sweep).__name__
        raise ValueError(f"sweep must be a Sweep (from product / zipped); got {kind}.")
    groups: dict[tuple, list[int]] = {}
    members = sweep.members()
    for i, m in enumerate(members):
        groups.setdefault(tuple((n, m[n]) for n in STATIC_AXES), []).append(i)
    out = []
    for key, idx in groups.items():
        structure = dict(key)
        group = [members[i] for i in idx]
        objective, stats, nets, _ = build_inputs(structure, group, sweep.objective)
        out.append(Inputs(structure, group, np.asarray(idx), objective, stats, nets))
    return out
