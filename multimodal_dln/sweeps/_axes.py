"""The sweep axes: every setting a sweep member can vary, its type, default, range and role.

A member of a sweep is one value per axis. Axes are of three roles:

- *static* axes fix the compiled structure (data kind and sizes, depth L, fusion layer L_f,
  width, init scheme, activation, method, solver tolerance, save-grid size): members sharing
  them are solved in one compiled, vmapped call;
- *traced* axes are array values inside that call (rho, ratio, noise, teacher weights,
  covariance draw and scales, init scale u0, learning rate, horizon, seed): new values never
  recompile;
- an axis that does not apply to a member (``rho`` for random covariances, ``lr`` for gradient
  flow, ``width`` for the reduced dynamics, ...) is recorded as empty (None) whatever was
  given, so it neither splits nor duplicates members.

Every axis is a column of the results table, so a stored row says everything that changed its
result (docs/sweeps.md). The toy data, random covariances and the networks are those of Zhang
et al. 2024 (docs/theory.md §1); methods: gradient flow, gradient descent (t = steps x lr) and
the reduced balanced rank-one dynamics (docs/theory.md §3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._activations import ACTIVATIONS
from .._constants import AUTHORS_LR
from .._network import INIT_SCHEMES

__all__ = [
    "AXES",
    "AXIS_NAMES",
    "DATA_KINDS",
    "METHODS",
    "STATIC_AXES",
    "Axis",
    "default_init_scale",
]

DATA_KINDS = ("toy", "random", "user")
METHODS = ("flow", "gd", "reduced")


def default_init_scale(depth: int) -> float:
    """u0 when none is given: 1e-12 for depth <= 2 (the small-initialization limit of the
    two-layer theory), else 0.1 (the paper's deep-network runs; docs/theory.md §3)."""
    return 1e-12 if depth <= 2 else 0.1


@dataclass(frozen=True)
class Axis:
    """One sweep axis: `kind` is "int", "float" or "str"; `static` whether it fixes the
    compiled structure; `applies(member)` whether it means anything for a member (else its
    value is None); `default(member)` its value when not given; `check(value)` returns an
    error text (without the axis name) or None."""

    name: str
    kind: str
    static: bool
    doc: str
    default: Callable[[Mapping], Any]
    applies: Callable[[Mapping], bool] = lambda m: True
    check: Callable[[Any], str | None] = lambda v: None


def _const(v):
    return lambda m: v


def _is(axis: str, *values):
    return lambda m: m.get(axis) in values


def _positive(v):
    return None if v > 0 else "must be > 0"


def _nonneg(v):
    return None if v >= 0 else "must be >= 0"


def _choice(choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _networked(m) -> bool:  # axes of a real network (not the reduced dynamics)
    return m.get("method") != "reduced"


def _dimension(m) -> int:
    return 1 if m.get("data") == "toy" else 10


def _default_rtol(m) -> float:
    return 1e-10 if m.get("method") == "reduced" else 1e-8


def _toy_or_random(m) -> bool:
    return m.get("data") in ("toy", "random")


_DIMENSION = "input dimension of modality {} (toy: 1; random: default 10)"
_INIT = "initialization: random (authors' Gaussian, per-layer norm u0), aligned, entrywise"

AXES: tuple[Axis, ...] = (
    # ---- data --------------------------------------------------------------------------------
    Axis(
        "data", "str", True,
        "data kind: toy (Zhang et al. 2024), random (inverse-Wishart covariances) or user (a "
        "supplied batch); default toy",
        _const("toy"), check=_choice(DATA_KINDS),
    ),
    Axis(
        "rho", "float", False, "toy: correlation of x_A and x_B, in (-1, 1); default 0",
        _const(0.0), _is("data", "toy"), lambda v: None if -1 < v < 1 else "must be in (-1, 1)",
    ),
    Axis(
        "ratio", "float", False, "toy: std ratio sigma_A / sigma_B > 0; default 2",
        _const(2.0), _is("data", "toy"), _positive,
    ),
    Axis("w_A", "float", False, "toy: teacher weight of x_A; default 1", _const(1.0),
         _is("data", "toy")),
    Axis("w_B", "float", False, "toy: teacher weight of x_B; default 1", _const(1.0),
         _is("data", "toy")),
    Axis("noise", "float", False, "label-noise std >= 0 (toy, random); default 0", _const(0.0),
         _toy_or_random, _nonneg),
    Axis("d_A", "int", True, _DIMENSION.format("A"), _dimension, _toy_or_random, _positive),
    Axis("d_B", "int", True, _DIMENSION.format("B"), _dimension, _toy_or_random, _positive),
    Axis("d_out", "int", True, "output dimension (toy: 1); default 1", _const(1), _toy_or_random,
         _positive),
    Axis("draw", "int", False, "random: seed of the covariance draw; default 0", _const(0),
         _is("data", "random"), _nonneg),
    Axis("scale_A", "float", False, "random: inverse-Wishart scale of modality A; default 2",
         _const(2.0), _is("data", "random"), _positive),
    Axis("scale_B", "float", False, "random: inverse-Wishart scale of modality B; default 1",
         _const(1.0), _is("data", "random"), _positive),
    Axis("data_index", "int", False, "user: index into the supplied batch", _const(0),
         _is("data", "user"), _nonneg),
    # ---- network -----------------------------------------------------------------------------
    Axis("depth", "int", True, "number of layers L; default 2", _const(2), check=_positive),
    Axis("fusion_layer", "int", True, "fusion layer L_f in 1..L (1 early, L late); default L",
         lambda m: m["depth"], check=_positive),
    Axis("width", "int", True, "hidden width; default 100", _const(100), _networked, _positive),
    Axis("init", "str", True, _INIT + "; default random", _const("random"), _networked,
         _choice(INIT_SCHEMES)),
    Axis("init_scale", "float", False, "initialization scale u0 > 0; default 1e-12 for L <= 2, "
         "else 0.1", lambda m: default_init_scale(m["depth"]), check=_positive),
    Axis("activation", "str", True, f"hidden activation: {', '.join(ACTIVATIONS)}; default "
         "linear", _const("linear"), _networked, _choice(ACTIVATIONS)),
    # ---- method and solver -------------------------------------------------------------------
    Axis("method", "str", True, "flow (gradient flow), gd (gradient descent) or reduced "
         "(reduced rank-one dynamics); default flow", _const("flow"), check=_choice(METHODS)),
    Axis("lr", "float", False, "gd: learning rate; default 0.04 (the authors')",
         _const(AUTHORS_LR), _is("method", "gd"), _positive),
    Axis("t_max", "float", False, "horizon in gradient-flow time; default: estimated, and "
         "extended for members not converged", _const(None), check=_positive),
    Axis("rtol", "float", True, "flow, reduced: ODE relative tolerance; default 1e-8 (reduced "
         "1e-10)", _default_rtol, _is("method", "flow", "reduced"), _positive),
    Axis("n_save", "int", True, "number of saved times; default 512", _const(512),
         check=_positive),
    Axis("seed", "int", False, "network-initialization seed; default 0", _const(0), _networked,
         _nonneg),
)  # fmt: skip
AXIS_NAMES: tuple[str, ...] = tuple(a.name for a in AXES)
STATIC_AXES: tuple[str, ...] = tuple(a.name for a in AXES if a.static)
_BY_NAME = {a.name: a for a in AXES}
# Axes other defaults and applicability depend on come first.
_RESOLVE_ORDER = ("data", "method", "depth") + tuple(
    n for n in AXIS_NAMES if n not in ("data", "method", "depth")
)


def axis(name: str) -> Axis:
    return _BY_NAME[name]


def unknown_axis_message(name: str) -> str:
    return f"unknown sweep axis {name!r}; the axes are: {', '.join(AXIS_NAMES)}."


def coerce(a: Axis, v: Any) -> Any:
    """`v` as the axis' Python type (None stays None), or a ValueError text."""
    if v is None:
        return None
    if a.kind == "str":
        if not isinstance(v, str):
            raise TypeError("must be a string")
        return v
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("must be a number, not a boolean")
    if a.kind == "int":
        f = float(v) if isinstance(v, (int, float, np.integer, np.floating)) else math.nan
        if not (math.isfinite(f) and f == int(f)):
            raise TypeError("must be an integer")
        return int(f)
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise TypeError("must be a number") from None
    if not math.isfinite(x):
        raise TypeError("must be finite")
    return x


def resolve(given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The full member for the axis values `given`: defaults filled in, axes that do not apply
    set to None, every value coerced and range-checked. Errors are one-line `ValueError`s
    naming `where` (e.g. "member 7"), the axis, the allowed values and what was given."""
    for name in given:
        if name not in _BY_NAME:
            raise ValueError(unknown_axis_message(name))
    m: dict[str, Any] = {}
    for name in _RESOLVE_ORDER:
        a = _BY_NAME[name]
        if not a.applies(m):
            m[name] = None
            continue
        v = given[name] if given.get(name) is not None else a.default(m)
        try:
            v = coerce(a, v)
        except TypeError as e:
            raise ValueError(f"{where}: {name} {e}; got {given.get(name)!r}.") from None
        problem = None if v is None else a.check(v)
        if problem:
            raise ValueError(f"{where}: {name} {problem}; got {v!r}.")
        m[name] = v
    if m["fusion_layer"] > m["depth"]:
        raise ValueError(
            f"{where}: fusion_layer must be in 1..depth = {m['depth']}; got {m['fusion_layer']}."
        )
    if m["method"] == "reduced" and m["data"] != "user" and m["d_out"] != 1:
        raise ValueError(f"{where}: method 'reduced' needs d_out = 1; got {m['d_out']}.")
    if m["data"] == "toy" and (m["d_A"], m["d_B"], m["d_out"]) != (1, 1, 1):
        raise ValueError(
            f"{where}: the toy data has d_A = d_B = d_out = 1; got "
            f"({m['d_A']}, {m['d_B']}, {m['d_out']}) (use data='random' for other sizes)."
        )
    return {n: m[n] for n in AXIS_NAMES}
