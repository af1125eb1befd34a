"""Memory checks before a solve allocates: one-line errors instead of an out-of-memory crash."""

from __future__ import annotations

import os

import jax

__all__ = ["available_memory", "check_solve_memory"]


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
