"""Declaring a sweep: cartesian products, zipped axes, concatenation (docs/sweeps.md).

    sweep = product(depth=4, fusion_layer=[1, 2, 3, 4], rho=[-0.5, 0, 0.5], seed=range(3))
    sweep = product(data="random", d_A=10, d_B=10, draw=range(32)) * product(fusion_layer=[1, 2])
    sweep = product(method=["flow", "gd"]) * zipped(ratio=[2, 3], init_scale=[1e-6, 1e-8])
    sweep = product(statistics=my_batch, depth=2)      # a user-supplied batch of Statistics
    sweep = zipped(dataset=my_data, seed=range(8))     # one seed per entry of a supplied batch

`a * b` is the cartesian product of two sweeps (their axes must differ), `a + b` their
concatenation. `Sweep.members()` resolves every member (`_axes.resolve`: defaults, axes that do
not apply set to None, one-line errors naming the member) and drops repeats, keeping the
first.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax

from .._dataset import Dataset
from .._statistics import Statistics
from ._axes import AXIS_NAMES, resolve, unknown_axis_message

__all__ = ["Sweep", "product", "zipped"]


class Sweep:
    """A declared sweep: a list of partial members (axis -> value, as given) and, for
    ``data="user"`` members, the supplied batch of `Statistics` or `Dataset` (leading axis:
    ``data_index``). Build it with `product`, `zipped`, ``*`` and ``+``."""

    def __init__(self, given: Sequence[Mapping[str, Any]], objective=None):
        self.given = [dict(g) for g in given]
        self.objective = objective

    def __len__(self) -> int:
        return len(self.given)

    def __repr__(self) -> str:
        axes = {k for g in self.given for k in g}
        return f"Sweep({len(self)} members, axes: {', '.join(sorted(axes)) or 'none'})"

    def __mul__(self, other: Sweep) -> Sweep:
        if not isinstance(other, Sweep):
            return NotImplemented
        mine = {k for g in self.given for k in g}
        theirs = {k for g in other.given for k in g}
        if mine & theirs:
            raise ValueError(
                f"cannot multiply sweeps that both set {', '.join(sorted(mine & theirs))}; "
                "give each axis in one factor (or use zipped for axes that vary together)."
            )
        return Sweep(
            [{**a, **b} for a in self.given for b in other.given],
            _one_objective(self.objective, other.objective),
        )

    def __add__(self, other: Sweep) -> Sweep:
        if not isinstance(other, Sweep):
            return NotImplemented
        return Sweep(self.given + other.given, _one_objective(self.objective, other.objective))

    def members(self) -> list[dict[str, Any]]:
        """Every member resolved (all axes, in `AXIS_NAMES` order), repeats dropped."""
        out, seen = [], set()
        n_user = _n_user(self.objective)
        for i, g in enumerate(self.given):
            m = resolve(g, f"member {i}")
            if m["data"] == "user":
                if self.objective is None:
                    raise ValueError(
                        f"member {i}: data='user' needs a supplied batch: "
                        "product(statistics=...) or product(dataset=...)."
                    )
                if m["data_index"] >= n_user:
                    raise ValueError(
                        f"member {i}: data_index must be in 0..{n_user - 1} (the supplied "
                        f"batch holds {n_user}); got {m['data_index']}."
                    )
            key = tuple(m[n] for n in AXIS_NAMES)
            if key not in seen:
                seen.add(key)
                out.append(m)
        return out


def _n_user(objective) -> int:
    if objective is None:
        return 0
    leaves = jax.tree.leaves(eqx.filter(objective, eqx.is_array))
    return int(leaves[0].shape[0])


def _one_objective(a, b):
    if a is not None and b is not None and a is not b:
        raise ValueError("a sweep holds at most one supplied batch (statistics or dataset).")
    return a if a is not None else b


def _values(name: str, v: Any) -> list:
    if name not in AXIS_NAMES:
        raise ValueError(unknown_axis_message(name))
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
        return [v]
    vals = list(v)
    if not vals:
        raise ValueError(f"sweep axis {name} has no values; give at least one.")
    return vals


def _user_batch(kw: dict) -> tuple[Any, list[dict]]:
    """Pop ``statistics=`` / ``dataset=`` from `kw`: (the batch, its members' partial dicts)."""
    stats, data = kw.pop("statistics", None), kw.pop("dataset", None)
    if stats is None and data is None:
        return None, [{}]
    if stats is not None and data is not None:
        raise ValueError("give statistics or dataset, not both.")
    batch = stats if stats is not None else data
    kind = Statistics if stats is not None else Dataset
    if not isinstance(batch, kind):
        name = "statistics" if stats is not None else "dataset"
        raise ValueError(f"{name} must be a batched {kind.__name__}; got {type(batch).__name__}.")
    if "data_index" in kw:
        raise ValueError("data_index is set by the supplied batch; do not give it too.")
    unbatched = batch.sigma_xx.ndim == 2 if kind is Statistics else batch.x_A.ndim == 2
    if unbatched:
        raise ValueError(
            f"{kind.__name__} must be a batch with one leading axis (vmap its constructor)."
        )
    n = _n_user(batch)
    return batch, [{"data": "user", "data_index": i} for i in range(n)]


def product(**axes: Any) -> Sweep:
    """The cartesian product of the given axes (a value or an iterable of values each; strings
    are single values), first axis slowest. ``statistics=`` / ``dataset=`` supply a batch
    (one member per entry, ``data="user"``)."""
    batch, user = _user_batch(axes)
    names = list(axes)
    grids = [_values(n, axes[n]) for n in names]
    given = [
        {**u, **dict(zip(names, combo, strict=True))}
        for u in user
        for combo in itertools.product(*grids)
    ]
    return Sweep(given, batch)


def zipped(**axes: Any) -> Sweep:
    """Axes that vary together: the i-th member takes the i-th value of every axis (all of the
    same length). A supplied ``statistics=`` / ``dataset=`` batch is zipped too: member i
    trains on its entry i (e.g. ``zipped(dataset=data, seed=range(n))``: one seed per entry)."""
    which = "statistics" if "statistics" in axes else "dataset"
    batch, user = _user_batch(axes)
    names = list(axes)
    vals = [_values(n, axes[n]) for n in names]
    lengths = {n: len(v) for n, v in zip(names, vals, strict=True)}
    if batch is not None:
        lengths = {which: len(user), **lengths}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{n}: {k}" for n, k in lengths.items())
        raise ValueError(f"zipped axes must have equal lengths; got {shown}.")
    combos = list(zip(*vals, strict=True)) if vals else [()] * (len(user) if batch else 0)
    if batch is None:
        return Sweep([dict(zip(names, combo, strict=True)) for combo in combos])
    given = [{**u, **dict(zip(names, c, strict=True))} for u, c in zip(user, combos, strict=True)]
    return Sweep(given, batch)
