"""Input checks that give a clear message both eagerly and under `jax.jit`/`jax.vmap`.

Concrete values (Python numbers, NumPy arrays, un-traced JAX arrays) are checked at once and
raise `ValueError` naming the parameter and the allowed range. Traced values cannot be inspected
in Python, so the same condition is attached to the computation with `eqx.error_if`, which raises
(with the same message) when the compiled function runs.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def check(x, bad, message: str):
    """Raise `ValueError(message)` where `bad` (a boolean array or bool) is true.

    Returns `x`, to which the runtime check is attached when `bad` is traced.
    """
    if _is_concrete(bad):
        if bool(np.any(np.asarray(bad))):
            raise ValueError(message)
        return x
    if not any(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(x)):
        x = jnp.asarray(x)  # a Python number, while `bad` was traced (inside jit)
    return eqx.error_if(x, jnp.any(bad), message)


def check_finite(name: str, x):
    """`x` must contain no NaN or inf."""
    return check(x, ~jnp.all(jnp.isfinite(jnp.asarray(x))), f"{name} contains NaN or inf; it must be finite.")


def check_positive(name: str, x, *, allow_zero: bool = False):
    x_arr = jnp.asarray(x)
    bad = (x_arr < 0) if allow_zero else (x_arr <= 0)
    bad = bad | ~jnp.isfinite(x_arr)
    rng = ">= 0" if allow_zero else "> 0"
    return check(x, bad, f"{name} must be finite and {rng}; got {_fmt(x)}.")


def check_open_interval(name: str, x, lo: float, hi: float):
    x_arr = jnp.asarray(x)
    bad = ~((x_arr > lo) & (x_arr < hi))
    return check(x, bad, f"{name} must lie in the open interval ({lo}, {hi}); got {_fmt(x)}.")


def check_positive_int(name: str, x) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1); got {x!r}.")
    return int(x)


def check_positive_definite(name: str, matrix, *, semi: bool = False, attach_to=None):
    """Symmetric and positive (semi-)definite, judged by the smallest eigenvalue.

    Returns `attach_to` (default: `matrix`) with the runtime check attached when traced.
    """
    m = jnp.asarray(matrix)
    sym_err = jnp.max(jnp.abs(m - jnp.swapaxes(m, -1, -2)), axis=(-1, -2))
    scale = jnp.maximum(jnp.max(jnp.abs(m), axis=(-1, -2)), 1e-300)
    eig_min = jnp.min(jnp.linalg.eigvalsh(0.5 * (m + jnp.swapaxes(m, -1, -2))), axis=-1)
    tol = (1e-12 if m.dtype == jnp.float64 else 1e-5) * scale
    bad_pd = (eig_min < -tol) if semi else (eig_min <= tol)
    bad = (sym_err > 1e-8 * scale) | bad_pd | ~jnp.all(jnp.isfinite(m), axis=(-1, -2))
    kind = "positive semi-definite" if semi else "positive definite"
    detail = ""
    if _is_concrete(eig_min):
        detail = f" (smallest eigenvalue {float(np.min(np.asarray(eig_min))):.3g})"
    target = matrix if attach_to is None else attach_to
    return check(target, bad, f"{name} must be symmetric and {kind}{detail}.")


def _fmt(x) -> str:
    if not _is_concrete(x):
        return "a traced value"
    arr = np.asarray(x)
    if arr.size == 1:
        return repr(arr.item())
    bad = arr.ravel()
    return f"array of shape {arr.shape} (min {bad.min():.3g}, max {bad.max():.3g})"
