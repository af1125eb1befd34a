"""Settings, grids and seeds of toy-data experiments: checked once, normalized, named.

Every check raises a one-line `ValueError` naming the parameter as the caller calls it
(`names` maps a parameter to its display name, e.g. the CLI's ``--fusion-layer``) and the
allowed range; the range rules themselves are the library's (`multimodal_dln._validation`).
The toy data and its parameters are those of Zhang et al. 2024 (toy data; docs/theory.md §1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._constants import AUTHORS_LR
from .._network import INIT_SCHEMES
from .._validation import (
    as_int,
    check_open_interval,
    check_positive,
    check_positive_int,
    check_structure,
)
from ..sweeps._axes import default_init_scale

__all__ = [
    "GRID_KEYS",
    "METHODS",
    "SETTING_KEYS",
    "default_init_scale",
    "normalize_seeds",
    "validate_grid",
    "validate_settings",
]

GRID_KEYS = ("fusion_layer", "rho", "ratio", "init_scale")
METHODS = ("flow", "gd")
SETTING_KEYS = ("depth", "width", "init", "method", "lr", "noise", "n_save", "t_max")
"""Settings that change results: resuming a sweep with different values is refused."""


def display(param: str, names: Mapping[str, str] | None) -> str:
    """The name of `param` in messages (`names` maps parameters to display names)."""
    return (names or {}).get(param, param)


def _as_float(param, v, names) -> float:
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{display(param, names)} must be a number; got {v!r}.")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{display(param, names)} must be a number; got {v!r}.") from None
    if not math.isfinite(x):
        raise ValueError(f"{display(param, names)} must be finite; got {v!r}.")
    return x


def validate_settings(
    *,
    depth,
    width,
    init="random",
    method="flow",
    lr=AUTHORS_LR,
    noise=0.0,
    t_max=None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check the structural / training settings; return them normalized (lr None for flow;
    t_max None for the automatic horizon, else a float > 0).

    Raises `ValueError` naming the parameter (as given in `names`, e.g. CLI flags) and its range.
    """
    depth = check_positive_int(display("depth", names), depth)
    width = check_positive_int(display("width", names), width)
    if init not in INIT_SCHEMES:
        raise ValueError(
            f"{display('init', names)} must be one of {', '.join(INIT_SCHEMES)}; got {init!r}."
        )
    if method not in METHODS:
        raise ValueError(
            f"{display('method', names)} must be one of {', '.join(METHODS)}; got {method!r}."
        )
    noise = _as_float("noise", noise, names)
    check_positive(display("noise", names), noise, allow_zero=True)
    if method == "gd":
        lr = _as_float("lr", lr, names)
        check_positive(f"{display('lr', names)} (learning rate)", lr)
    else:
        lr = None
    if t_max is not None:
        t_max = _as_float("t_max", t_max, names)
        check_positive(f"{display('t_max', names)} (horizon, gradient-flow time)", t_max)
    return {
        "depth": depth,
        "width": width,
        "init": init,
        "method": method,
        "lr": lr,
        "noise": noise,
        "t_max": t_max,
    }


def _as_list(v) -> list:
    if isinstance(v, (str, bytes)):
        return [v]
    if isinstance(v, np.ndarray):
        return v.ravel().tolist()
    if isinstance(v, Iterable):
        return list(v)
    return [v]


def unique(values: Iterable) -> list:
    """`values` without repeats, in first-seen order."""
    return list(dict.fromkeys(values))


def _fusion_layer(v, depth, names) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    try:
        return check_structure(depth, v)[1]
    except ValueError as err:  # the library's rule, worded with the caller's parameter name
        raise ValueError(
            str(err).replace("fusion_layer", display("fusion_layer", names), 1)
        ) from None


def _grid_value(key, v, names) -> float:
    x = _as_float(key, v, names)
    name = display(key, names)
    if key == "rho":
        check_open_interval(f"{name} (correlation)", x, -1, 1)
    elif key == "ratio":
        check_positive(f"{name} (sigma_A / sigma_B)", x)
    else:
        check_positive(f"{name} (u0)", x)
    return x


def validate_grid(
    grid: Mapping[str, Any], depth: int, names: Mapping[str, str] | None = None
) -> dict[str, list]:
    """Check a sweep grid {fusion_layer, rho, ratio, init_scale: value or list of values}.

    Returns the grid with every entry a non-empty list of Python numbers (duplicates removed).
    """
    if not isinstance(grid, Mapping):
        raise ValueError(
            f"grid must be a dict with keys {', '.join(GRID_KEYS)}; got {type(grid).__name__}."
        )
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ValueError(
            f"grid has unknown key(s) {unknown}; allowed keys: {', '.join(GRID_KEYS)}."
        )
    missing = [k for k in GRID_KEYS if k not in grid]
    if missing:
        raise ValueError(f"grid is missing key(s) {missing}; it needs {', '.join(GRID_KEYS)}.")
    out: dict[str, list] = {}
    for key in GRID_KEYS:
        values = _as_list(grid[key])
        if not values:
            raise ValueError(f"{display(key, names)} needs at least one value.")
        if key == "fusion_layer":
            out[key] = unique(_fusion_layer(v, depth, names) for v in values)
        else:
            out[key] = unique(_grid_value(key, v, names) for v in values)
    return out


def normalize_seeds(seeds, names: Mapping[str, str] | None = None) -> list[int]:
    """`seeds` = N (an int >= 1: seeds 0..N-1) or a non-empty sequence of distinct ints >= 0."""
    n = as_int(seeds)
    if n is not None:
        if not 1 <= n <= 2**32:
            raise ValueError(
                f"{display('seeds', names)} (number of seeds) must be an integer >= 1; "
                f"got {seeds!r}."
            )
        return list(range(n))
    values = [as_int(s) for s in _as_list(seeds)]
    if not values or not all(s is not None and 0 <= s < 2**32 for s in values):
        raise ValueError(
            f"{display('seeds', names)} must be an integer >= 1 (the number of seeds) or a "
            f"non-empty list of integers in [0, 2^32); got {seeds!r}."
        )
    return unique(values)
