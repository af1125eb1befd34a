"""JAX's persistent compilation cache, on by default in a user cache folder.

Compiling one batched solve takes seconds (most of a small sweep's wall time); with the cache a
second process running the same structure loads the executable instead. `import multimodal_dln`
calls `enable_compilation_cache()`, which points JAX at

    $MDLN_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/multimodal-dln/jax, else
    ~/.cache/multimodal-dln/jax

unless JAX already has a cache folder (yours wins) or ``MDLN_COMPILATION_CACHE=0`` is set (the
opt-out). The solves are cacheable because they hold no host callbacks
(`_solve.checks_as_nan`). JAX keys entries by program, jax version and backend, so a stale
entry is never used for another program. The folder is not size-capped (JAX's cap needs the
`filelock` package); delete it to reclaim its space.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["MIN_COMPILE_SECONDS", "default_cache_dir", "enable_compilation_cache"]

MIN_COMPILE_SECONDS = 0.0
"""Every executable is stored: a sweep also compiles ~100 small programs (input checks, batch
building, measurements), together seconds per process (measured: warm 180-member toy sweep
10.7 s with all cached, 15.8 s with only programs over 0.5 s cached)."""



def default_cache_dir() -> Path:
    """The cache folder used when none is configured (see the module docstring)."""
    if os.environ.get("MDLN_COMPILATION_CACHE_DIR"):
        return Path(os.environ["MDLN_COMPILATION_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "multimodal-dln" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Use a persistent compilation cache at `path` (default `default_cache_dir()`); returns
    the folder in use, or None when it is off (``MDLN_COMPILATION_CACHE=0``, or the folder
    cannot be created: the cache only saves time, so that is not an error)."""
    if path is None and os.environ.get("MDLN_COMPILATION_CACHE", "1") == "0":
        return None
    current = jax.config.jax_compilation_cache_dir
    if path is None and current:
        return Path(current)
    folder = Path(path) if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder
