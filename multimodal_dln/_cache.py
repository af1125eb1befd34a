"""JAX's persistent compilation cache, on by default in a user cache folder.

Compiling one batched solve takes seconds (most of a small sweep's wall time); with the cache a
second process running the same structure loads the executable instead. `import multimodal_dln`
calls `enable_compilation_cache()`, which points JAX at

    $MDLN_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/multimodal-dln/jax, else
    ~/.cache/multimodal-dln/jax

unless JAX already has a cache folder (yours wins) or ``MDLN_COMPILATION_CACHE=0`` is set (the
opt-out). The solves are cacheable because they hold no host callbacks
(`_solve.checks_as_nan`). JAX keys entries by program, jax version and backend, so a stale
entry is never used for another program. Gradient flow's lowered solves are stored in the
same folder (`mdln-exported/`, `multimodal_dln._exported`), so a warm process does not
trace them either. The folder is not size-capped (JAX's cap needs the
`filelock` package); delete it to reclaim its space.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import jax

__all__ = [
    "MIN_COMPILE_SECONDS",
    "cache_opted_out",
    "default_cache_dir",
    "enable_compilation_cache",
    "release_compiled_if_crowded",
]

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


def cache_opted_out() -> bool:
    """Whether ``MDLN_COMPILATION_CACHE=0`` is set: no persistent cache, no stored programs."""
    return os.environ.get("MDLN_COMPILATION_CACHE", "1") == "0"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Use a persistent compilation cache at `path` (default `default_cache_dir()`); returns
    the folder in use, or None when it is off (``MDLN_COMPILATION_CACHE=0``, or the folder
    cannot be created: the cache only saves time, so that is not an error)."""
    if path is None and cache_opted_out():
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


def _map_count_and_limit() -> tuple[int, int] | None:
    """(memory mappings this process holds, the most Linux allows it), or None without /proc."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read().strip())
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f), limit
    except (OSError, ValueError):
        return None


def release_compiled_if_crowded(fraction: float = 0.5) -> bool:
    """Drop JAX's in-memory compiled programs (`jax.clear_caches()`) when the process holds more
    than `fraction` of the memory mappings Linux allows it; returns whether it did.

    XLA:CPU maps its compiled code: measured ~6 regions per small program and ~800-1,000 for
    one structure's solve with its measurement and batch building. Linux caps a process at
    `vm.max_map_count` (65,530 by default), and past it the next compilation cannot map its
    code and the process dies (a segmentation fault, not an exception). A long process that
    compiles many structures (the test suite, `mdln reproduce all`, a sweep over many depths)
    calls this between structures; programs needed again are reloaded from the persistent
    cache (or recompiled). A no-op where /proc is unavailable."""
    counts = _map_count_and_limit()
    if counts is None or counts[0] <= fraction * counts[1]:
        return False
    jax.clear_caches()
    gc.collect()
    return True
