"""Input checks: a clear one-line error for concrete values, NaN poisoning for traced ones.

Concrete values (Python numbers, NumPy arrays, un-traced JAX arrays) are checked at once and
raise `ValueError` naming the parameter, the allowed values and what was given; for an array
the message names the first bad member (``rho[2] = 1.2: ...``) and how many are bad. Traced values (inside `jax.jit`/`jax.vmap`) cannot be inspected in Python, so
`check` returns them with NaN in place of every bad entry: one bad member of a vmapped batch
then gives NaN results for that member only, which the solvers flag, while the other members are
computed exactly as before (no `eqx.error_if`, which would fail the whole batch).
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check",
    "check_dtype",
    "check_finite",
    "check_open_interval",
    "check_positive",
    "check_positive_definite",
    "check_positive_int",
    "check_solve_memory",
    "count_params",
    "is_traced",
    "poison",
    "psd_ok",
]


def _is_concrete(x) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def is_traced(x) -> bool:
    """True when any leaf of `x` is a tracer (inside `jit`/`vmap`), so its values are unknown."""
    return not _is_concrete(x)


def _align(bad, ndim: int):
    """`bad` aligned on the *leading* axes of an `ndim`-dimensional array (per-member masks)."""
    bad = jnp.asarray(bad)
    if bad.ndim > ndim:
        return jnp.any(bad, axis=tuple(range(ndim, bad.ndim)))
    return bad.reshape(bad.shape + (1,) * (ndim - bad.ndim))


def poison(x, bad):
    """`x` (an array or pytree) with NaN wherever `bad` is true.

    `bad` is aligned on the leading axes of every inexact array leaf: a scalar poisons the whole
    leaf, a `(n,)` mask poisons whole members of `(n, ...)` leaves, a mask of the leaf's own
    shape poisons single entries. Leaves that cannot hold NaN (integers, bools) are unchanged.
    """

    def one(leaf):
        is_array = isinstance(leaf, jax.Array | np.ndarray)
        if not (is_array and jnp.issubdtype(leaf.dtype, jnp.inexact)):
            return leaf
        return jnp.where(_align(bad, jnp.ndim(leaf)), jnp.asarray(jnp.nan, leaf.dtype), leaf)

    if isinstance(x, int | float):
        x = jnp.asarray(x)  # a Python number, while `bad` was traced (inside jit)
    return jax.tree.map(one, x)


def check(x, bad, message: str | Callable[[np.ndarray], str]):
    """Raise `ValueError(message)` where `bad` (a boolean array or bool) is true.

    `message` may be a callable taking the concrete boolean mask (built only on failure). When
    `bad` is traced, returns `x` with NaN where `bad` is true (see `poison`); otherwise `x`.
    """
    if _is_concrete(bad):
        mask = np.asarray(bad)
        if bool(np.any(mask)):
            raise ValueError(message(mask) if callable(message) else message)
        return x
    return poison(x, bad)


# ---- messages ----------------------------------------------------------------------------------
def _show(v) -> str:
    """A value as the user would type it: 1.2, nan, 1e+200, '1e-3', True, None."""
    if isinstance(v, jax.core.Tracer):
        return f"a traced {v.dtype} value of shape {v.shape}"
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, np.ndarray | jax.Array) and np.size(v) == 1:
        return repr(np.asarray(v).item())
    return repr(v)


def _short(name: str) -> str:
    return name.split(" (")[0]


def _describe(name: str, x, bad, rule: str, *, label: str | None = None) -> str:
    """One line: `rule; got v.` for a scalar, `name[i] = v: rule (k of n ... are bad).` for an array
    (where "{at}" in `rule` becomes " (first at <label> i)" when `label` names axis 0)."""
    arr = np.asarray(x)
    if arr.ndim == 0:
        return f"{rule.replace('{at}', '')}; got {_show(arr)}."
    mask = np.broadcast_to(np.asarray(bad), arr.shape)
    hits = np.argwhere(mask)
    first = tuple(int(i) for i in hits[0])
    at = f" (first at {label} {first[0]})" if label else ""
    where = f"{_short(name)}[{', '.join(map(str, first))}]"
    msg = f"{where} = {_show(arr[first])}: {rule.replace('{at}', at)}"
    if len(hits) > 1:
        unit = "members" if arr.ndim == 1 else "entries"
        msg += f" ({len(hits)} of {arr.size} {unit} are bad)"
    return msg + "."


def require_real(name: str, x, kind: str) -> None:
    """`x` must be a real number or array (int or float dtype): no str, bool, None or object."""
    ok = not (x is None or isinstance(x, str | bytes | bool | np.bool_))
    if ok:
        if isinstance(x, jax.Array | np.ndarray | np.generic):  # tracers included
            dtype = x.dtype
        else:
            try:
                dtype = np.asarray(x).dtype
            except (TypeError, ValueError):
                dtype = np.dtype(object)
        ok = jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
    if not ok:
        big = isinstance(x, np.ndarray | jax.Array) and np.size(x) > 1
        shown = repr(x) if big else _show(x)
        raise ValueError(f"{name} must be {kind}; got {shown}.")


# ---- value checks ------------------------------------------------------------------------------
def check_finite(name: str, x, *, label: str | None = None):
    """`x` must contain no NaN or inf; `label` names axis 0 in messages (e.g. "sample")."""
    require_real(name, x, "a finite real number or array")
    bad = ~jnp.isfinite(jnp.asarray(x))
    if np.ndim(x) == 0:
        rule = f"{name} must be finite (not NaN or inf)"
        return check(x, bad, lambda b: _describe(name, x, b, rule))
    rule = f"{name} contains NaN or inf{{at}}; it must be finite"
    return check(x, bad, lambda b: _describe(name, x, b, rule, label=label))


def check_positive(name: str, x, *, allow_zero: bool = False):
    require_real(name, x, "a number >= 0" if allow_zero else "a positive number")
    x_arr = jnp.asarray(x)
    bad = (x_arr < 0) if allow_zero else (x_arr <= 0)
    bad = bad | ~jnp.isfinite(x_arr)
    rule = f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}"
    return check(x, bad, lambda b: _describe(name, x, b, rule))


def check_open_interval(name: str, x, lo: float, hi: float):
    require_real(name, x, f"a number in the open interval ({lo}, {hi})")
    x_arr = jnp.asarray(x)
    bad = ~((x_arr > lo) & (x_arr < hi))
    rule = f"{name} must lie in the open interval ({lo}, {hi})"
    return check(x, bad, lambda b: _describe(name, x, b, rule))


def as_int(x) -> int | None:
    """`x` as a Python int if it is an integer (Python or NumPy, or a concrete integer scalar
    array), else None. Bools are not integers here."""
    if isinstance(x, bool | np.bool_) or getattr(x, "dtype", None) == np.bool_:
        return None
    try:
        return operator.index(x)
    except TypeError:
        return None


def check_positive_int(name: str, x) -> int:
    """A positive integer (Python or NumPy integer; not bool, float or str)."""
    v = as_int(x)
    if v is None or v < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1); got {_show(x)}.")
    return v


def check_structure(depth, fusion_layer) -> tuple[int, int]:
    """(depth, fusion_layer) as Python ints: L >= 1 and L_f an integer in [1, L]
    (L_f = 1 early fusion, L_f = L late fusion; docs/theory.md §1)."""
    depth = check_positive_int("depth (L)", depth)
    lf = as_int(fusion_layer)
    if lf is None or not 1 <= lf <= depth:
        raise ValueError(
            f"fusion_layer (L_f) must be an integer in [1, depth] = [1, {depth}]; "
            f"got {_show(fusion_layer)}."
        )
    return depth, lf


def _x64_enabled() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


def check_dtype(dtype) -> np.dtype:
    """float32, or float64 when JAX's 64-bit mode is on; returns the NumPy dtype."""
    try:
        dt = None if dtype is None or isinstance(dtype, bool) else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        shown = dt.name if dt is not None else _show(dtype)
        raise ValueError(f"dtype must be float32 or float64; got {shown}.")
    if dt == np.float64 and not _x64_enabled():
        raise ValueError(
            "dtype must be float32 or float64 (float64 needs 64-bit JAX: jax_enable_x64, on unless "
            "MDLN_X64=0); got float64 with 64-bit JAX disabled."
        )
    return dt


# ---- matrices ------------------------------------------------------------------------------------
def _psd_parts(m):
    """(finite, symmetric, smallest eigenvalue, tolerance) per matrix of a `(..., d, d)` stack."""
    finite = jnp.all(jnp.isfinite(m), axis=(-1, -2))
    sym_err = jnp.max(jnp.abs(m - jnp.swapaxes(m, -1, -2)), axis=(-1, -2))
    scale = jnp.maximum(jnp.max(jnp.abs(m), axis=(-1, -2)), 1e-300)
    eig_min = jnp.min(jnp.linalg.eigvalsh(0.5 * (m + jnp.swapaxes(m, -1, -2))), axis=-1)
    tol = (1e-12 if m.dtype == jnp.float64 else 1e-5) * scale
    return finite, sym_err <= 1e-8 * scale, eig_min, tol


def psd_ok(matrix, *, semi: bool = True):
    """Traceable per-matrix test: finite, symmetric (rel. 1e-8) and positive (semi-)definite
    (smallest eigenvalue >= -tol, or > tol, with tol = 1e-12 (float64) or 1e-5 (float32) times
    the largest entry). Returns (ok, smallest eigenvalue), each of shape `matrix.shape[:-2]`."""
    m = jnp.asarray(matrix)
    finite, sym, eig_min, tol = _psd_parts(m)
    pd = (eig_min >= -tol) if semi else (eig_min > tol)
    return finite & sym & pd, eig_min


def check_positive_definite(name: str, matrix, *, semi: bool = False, attach_to=None):
    """Symmetric and positive (semi-)definite, judged by the smallest eigenvalue.

    Returns `attach_to` (default: `matrix`), NaN-poisoned per bad matrix when traced.
    """
    ok, eig_min = psd_ok(matrix, semi=semi)
    kind = "positive semi-definite" if semi else "positive definite"

    def message(bad):
        first = tuple(int(i) for i in np.argwhere(bad)[0]) if np.ndim(bad) else ()
        at = f"member {', '.join(map(str, first))}: " if first else ""
        e = float(np.asarray(eig_min)[first])
        return f"{at}{name} must be symmetric and {kind} (smallest eigenvalue {e:.3g})."

    return check(matrix if attach_to is None else attach_to, ~ok, message)


# ---- memory --------------------------------------------------------------------------------------
def count_params(tree, *, batch_ndim: int = 0) -> int:
    """Number of parameters per member: the sizes of the array leaves of `tree` (arrays or
    `jax.ShapeDtypeStruct`s, e.g. from `eqx.filter_eval_shape`) less `batch_ndim` leading axes."""
    leaves = [a for a in jax.tree.leaves(tree) if hasattr(a, "shape") and hasattr(a, "dtype")]
    return sum(math.prod(int(s) for s in leaf.shape[batch_ndim:]) for leaf in leaves)


def available_memory() -> tuple[int, str]:
    """(bytes, where): the default device's memory limit (GPU), else the physical RAM."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001  (backends without memory statistics)
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), "this device has"
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine has"


def check_solve_memory(
    n_members: int,
    n_params: int,
    itemsize: int,
    *,
    copies: int,
    what: str,
    subject: str = "the solve",
    hint: str = "lower width, depth or the batch size",
) -> int:
    """Raise before allocating when n_members x n_params x itemsize x copies bytes exceed the
    available memory (see `available_memory`). `what` says what the copies are for (e.g.
    "for the solver stages"); `subject` and `hint` open and close the message. Returns the
    estimated bytes."""
    need = int(n_members) * int(n_params) * int(itemsize) * int(copies)
    have, where = available_memory()
    if need > have:
        members = f"{n_members:,} member{'s' if n_members != 1 else ''}"
        cps = f"{copies} cop{'ies' if copies != 1 else 'y'} {what}".rstrip()
        raise ValueError(
            f"{subject} needs about {need / 1e9:.1f} GB ({members} x {n_params:,} parameters x "
            f"{itemsize} bytes x {cps}) but {where} {have / 1e9:.1f} GB; {hint}."
        )
    return need
