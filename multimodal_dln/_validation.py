"""Input checks: a clear one-line error for concrete values, NaN poisoning for traced ones.

Concrete values (Python numbers, NumPy arrays, un-traced JAX arrays) are checked at once and
raise `ValueError` naming the parameter, the allowed values and what was given; for an array
the message names the first bad member (``rho[2] = 1.2: ...``) and how many are bad. Traced
values (inside `jax.jit`/`jax.vmap`) cannot be inspected in Python, so `check` returns them
with NaN in place of every bad entry: one bad member of a vmapped batch then gives NaN results
for that member only, which the solvers flag, while the other members are computed exactly as
before (no `eqx.error_if`, which would fail the whole batch).

Static options (Python numbers fixed at compile time, e.g. solver tolerances) are checked by
`check_option_open` / `check_option_min`; structural integers by `check_positive_int`,
`check_structure` and `check_widths`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _linalg

__all__ = [
    "broadcast_members",
    "check",
    "check_choice",
    "check_dtype",
    "check_finite",
    "check_finite_members",
    "check_open_interval",
    "check_option_min",
    "check_option_open",
    "check_positive",
    "check_positive_int",
    "check_sample_counts",
    "check_scalar",
    "check_structure",
    "check_widths",
    "finite_members",
    "is_traced",
    "poison",
    "psd_ok",
]


def is_traced(x) -> bool:
    """True when any leaf of `x` is a tracer (inside `jit`/`vmap`), so its values are unknown."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def _xp(x):
    """NumPy for concrete values, jax.numpy for traced ones: a check of concrete input runs on
    the host and compiles nothing (op by op in jax.numpy, each new shape compiled a handful of
    small XLA programs, seconds before a first solve could start)."""
    return jnp if is_traced(x) else np


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
    if not is_traced(bad):
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
    xp = _xp(x)
    bad = ~xp.isfinite(xp.asarray(x))
    if np.ndim(x) == 0:
        rule = f"{name} must be finite (not NaN or inf)"
        return check(x, bad, lambda b: _describe(name, x, b, rule))
    rule = f"{name} contains NaN or inf{{at}}; it must be finite"
    return check(x, bad, lambda b: _describe(name, x, b, rule, label=label))


def check_positive(name: str, x, *, allow_zero: bool = False):
    require_real(name, x, "a number >= 0" if allow_zero else "a positive number")
    xp = _xp(x)
    x_arr = xp.asarray(x)
    bad = (x_arr < 0) if allow_zero else (x_arr <= 0)
    bad = bad | ~xp.isfinite(x_arr)
    rule = f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}"
    return check(x, bad, lambda b: _describe(name, x, b, rule))


def check_weight_decay(weight_decay, batch: int | None):
    """weight_decay (docs/theory.md §8): finite, >= 0, a scalar or one entry per member."""
    lam, n = check_positive("weight_decay", weight_decay, allow_zero=True), batch or 1
    rule = f"weight_decay must be a scalar or have {n} entries (one per member)"
    return check(lam, np.shape(lam) not in ((), (n,)), f"{rule}; got shape {np.shape(lam)}.")


def check_open_interval(name: str, x, lo: float, hi: float):
    require_real(name, x, f"a number in the open interval ({lo}, {hi})")
    x_arr = _xp(x).asarray(x)
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


def check_choice(name: str, value, choices: tuple):
    """`value` must be one of `choices` (strings such as an activation or a direction)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}.")
    return value


def check_scalar(name: str, x):
    """`x` must have no axes (a batch is built by vmapping, not by passing arrays)."""
    if np.ndim(x) != 0:
        raise ValueError(
            f"{name} must be a scalar (vmap over keys and values for a batch); "
            f"got shape {np.shape(x)}."
        )
    return x


# ---- static solver options (Python numbers fixed at compile time) --------------------------------
def _is_number(v) -> bool:
    return not isinstance(v, bool | np.bool_) and isinstance(
        v, int | float | np.floating | np.integer
    )


def check_option_open(name: str, v, lo: float, hi: float) -> float:
    """A static option (a Python or NumPy number, not an array) strictly inside (lo, hi)."""
    if not _is_number(v) or not lo < v < hi:
        raise ValueError(
            f"{name} must be a number in the open interval ({lo:g}, {hi:g}); got {v!r}."
        )
    return float(v)


def check_option_min(
    name: str, v, lo: float, *, strict: bool, finite: bool = True, allow_none: bool = False
) -> float | None:
    """A static option (a Python or NumPy number) >= lo (> lo when `strict`), finite unless
    `finite` is False; None passes through when `allow_none`."""
    if v is None and allow_none:
        return None
    ok = _is_number(v) and (v > lo if strict else v >= lo) and (v < np.inf or not finite)
    if not ok:
        rule = f"{'a finite number' if finite else 'a number'} {'>' if strict else '>='} {lo:g}"
        raise ValueError(f"{name} must be {rule}{' or None' if allow_none else ''}; got {v!r}.")
    return float(v)


def check_widths(width, depth: int) -> tuple[int, ...]:
    """The L - 1 hidden widths: one positive integer width (repeated), or a sequence of
    depth - 1 of them (not str, bool or float)."""
    rule = (
        f"width must be a positive integer or a sequence of depth - 1 = {depth - 1} "
        "positive integers"
    )
    w = as_int(width)
    if w is not None:
        if w < 1:
            raise ValueError(f"{rule}; got {w}.")
        return (w,) * (depth - 1)
    is_seq = isinstance(width, Sequence | np.ndarray) and not isinstance(width, str | bytes)
    if not is_seq or np.ndim(width) != 1:
        raise ValueError(f"{rule}; got {_show(width)}.")
    widths = tuple(as_int(v) for v in width)
    if len(widths) != depth - 1:
        raise ValueError(f"{rule}; got {len(widths)} widths: {_show(list(width))}.")
    for i, (v, raw) in enumerate(zip(widths, width, strict=True)):
        if v is None or v < 1:
            raise ValueError(f"width[{i}] = {_show(raw)}: {rule}.")
    return widths


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


def broadcast_members(names: Sequence[str], arrays: Sequence) -> tuple:
    """`arrays` broadcast to one shape with at most one (batch) axis; the error names them
    ("a, b and c must broadcast to one shape; got shapes a (2,), b (3,), c ()")."""
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    shapes = ", ".join(f"{n} {jnp.shape(a)}" for n, a in zip(names, arrays, strict=True))
    try:
        shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in arrays))
    except ValueError:
        raise ValueError(f"{listed} must broadcast to one shape; got shapes {shapes}.") from None
    if len(shape) > 1:
        raise ValueError(f"{listed} may carry at most one batch axis; got shapes {shapes}.")
    return tuple(jnp.broadcast_to(a, shape) for a in arrays)


def finite_members(arrays) -> jax.Array | np.ndarray:
    """Traceable per-member mask: every entry of the `(*batch, r, c)` arrays is finite (a
    NumPy array for concrete arrays)."""
    xp = _xp(arrays)
    ok = xp.ones(np.shape(arrays[0])[:-2], dtype=bool)
    for a in arrays:
        ok = ok & xp.all(xp.isfinite(xp.asarray(a)), axis=(-2, -1))
    return xp.asarray(ok)


def check_finite_members(arrays, message):
    """Every entry of the `(..., r, c)` arrays finite: raise `message` (a string, or a callable
    of the bad-member mask) when concrete; traced, a member with any non-finite entry becomes
    all-NaN in every array (its other entries would look valid)."""
    return check(arrays, ~finite_members(arrays), message)


def check_sample_counts(x_A, x_B, y) -> int:
    """The three sample arrays `(*batch, n, k)` hold the same number n of samples; returns n."""
    n = x_A.shape[-2]
    if x_B.shape[-2] != n or y.shape[-2] != n:
        raise ValueError(
            f"x_A, x_B and y must have the same number of samples; got {x_A.shape[-2]}, "
            f"{x_B.shape[-2]}, {y.shape[-2]}."
        )
    return n


# ---- matrices ------------------------------------------------------------------------------------
def psd_ok(matrix, *, semi: bool = True):
    """Traceable per-matrix test: finite, symmetric (rel. 1e-8) and positive (semi-)definite
    (smallest eigenvalue >= -tol, or > tol, with tol = 1e-12 (float64) or 1e-5 (float32) times
    the largest entry). Returns (ok, smallest eigenvalue), each of shape `matrix.shape[:-2]`."""
    m = jnp.asarray(matrix)
    finite = jnp.all(jnp.isfinite(m), axis=(-1, -2))
    sym_err = jnp.max(jnp.abs(m - jnp.swapaxes(m, -1, -2)), axis=(-1, -2))
    scale = jnp.maximum(jnp.max(jnp.abs(m), axis=(-1, -2)), 1e-300)
    eig_min = jnp.min(_linalg.eigvalsh(0.5 * (m + jnp.swapaxes(m, -1, -2))), axis=-1)
    tol = (1e-12 if m.dtype == jnp.float64 else 1e-5) * scale
    pd = (eig_min >= -tol) if semi else (eig_min > tol)
    return finite & (sym_err <= 1e-8 * scale) & pd, eig_min
