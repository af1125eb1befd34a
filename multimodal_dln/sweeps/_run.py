"""Running a declared sweep: grouping by structure, chunking, the store, the results table.

1. Members are grouped by their static axes (one compiled solve per structure; a supplied
   horizon and the automatic one are separate groups, and gradient descent groups by step
   budget).
2. Within a group members are sorted by predicted duration (`predicted_cost`, the horizon
   estimate: a vmapped solve runs until its slowest member is done) and cut into equal chunks
   of at most `chunk_size` (n chunks of ceil(N / n): at most n - 1 padding members, never a
   group padded up to `chunk_size`); with several devices a chunk is a multiple of the device
   count and is sharded over them (`multimodal_dln._sharding`).
3. Each chunk's rows are appended to the store in one write (`_store.Store`) before the next
   chunk starts, so an interrupted sweep keeps every finished chunk, and ``resume`` skips the
   members already stored. With several processes (`jax.distributed`) every process runs the
   same sweep and gets every chunk's results (`multimodal_dln._sharding`), and process 0
   alone writes the store (`_open_store`).

Results do not depend on the chunking: a member's inputs depend on its own axis values only
(`_build`), and members are solved independently; a member solved in another batch size agrees
to floating-point round-off (measured <= 1e-9 relative on phase times; tests/test_sweeps.py).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable

import equinox as eqx
import jax
import numpy as np

from .._cache import release_compiled_if_crowded
from .._io import fmt_cell
from .._sharding import from_main_process, is_main_process
from ._axes import AXIS_NAMES, STATIC_AXES
from ._frame import COLUMNS, read_stored, to_frame
from ._solve_chunk import gd_budget, predicted_cost, solve_chunk
from ._spec import Sweep
from ._store import Store, SweepError

__all__ = ["run"]

FORMAT = 1


def _structure(m: dict) -> tuple:
    return tuple((n, m[n]) for n in STATIC_AXES) + (("auto_horizon", m["t_max"] is None),)


def member_key(m: dict) -> tuple[str, ...]:
    """A member's identity in the store: every axis value as written in results.csv."""
    return tuple(fmt_cell(m[n]) for n in AXIS_NAMES)


def _groups(members, user) -> list[tuple[dict, list[dict], int | None]]:
    """(structure, members sorted by predicted cost, GD step budget) per compiled solve."""
    by: dict[tuple, list[dict]] = {}
    for m in members:
        by.setdefault(_structure(m), []).append(m)
    out = []
    for key, group in by.items():
        structure = dict(key)
        cost = predicted_cost(structure, group, user)
        order = np.argsort(cost, kind="stable")
        group = [group[i] for i in order]
        cost = cost[order]
        if structure["method"] != "gd":
            out.append((structure, group, None))
            continue
        budgets: dict[int, list[dict]] = {}
        for m, h in zip(group, cost, strict=True):
            steps = gd_budget(h, m["lr"]) if m["t_max"] is None else math.ceil(m["t_max"] / m["lr"])
            budgets.setdefault(steps, []).append(m)
        out += [(structure, g, steps) for steps, g in sorted(budgets.items())]
    return out


def chunks(n: int, chunk_size: int, multiple: int = 1) -> list[tuple[int, int, int]]:
    """(start, stop, padded size) of equal chunks covering n members: ceil(n / chunk_size)
    chunks of ceil(n / count) members each, rounded up to a multiple of `multiple`."""
    count = max(1, math.ceil(n / chunk_size))
    size = math.ceil(n / count)
    size = multiple * math.ceil(size / multiple)
    return [(i, min(n, i + size), size) for i in range(0, n, size)]


def _fingerprint(user) -> str | None:
    if user is None:
        return None
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(eqx.filter(user, eqx.is_array)):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


def run(
    sweep: Sweep,
    out=None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    chunk_size: int = 64,
    reduced: bool = False,
    shard="auto",
    progress: bool = True,
    on_chunk: Callable[[list[dict]], None] | None = None,
):
    """Run (or resume) a sweep; return its results as a pandas DataFrame, one row per member.

    **Arguments:**

    - `sweep`: a `Sweep` (`product`, `zipped`, ``*``, ``+``).
    - `out`: a folder for ``results.csv`` and ``config.json`` (`load` reads it back); None keeps
      the results in memory only. With several processes (`jax.distributed`; every process
      runs the same sweep) process 0 alone writes it; every process returns the same table.
    - `resume`: continue the sweep in `out`, skipping members already stored (the sweep may
      have grown); `overwrite`: start afresh, moving a previous sweep's files aside into
      ``out/replaced-<time>/``. Without either, a folder that holds a sweep is refused.
    - `chunk_size`: at most this many members per batched solve (groups are cut evenly).
    - `reduced`: add ``reduced_time_ratio``, the reduced dynamics' prediction per member.
    - `shard`: "auto" (every device when there are several), False, or a 1-D
      `jax.sharding.Mesh` with axis "batch".
    - `progress`: a progress bar on stderr; `on_chunk`: called with each chunk's rows once
      they are stored.

    **Returns:** a DataFrame with every axis (None where an axis does not apply), the
    measurements, ``status`` / ``reason`` per member, ``t_end``, ``num_steps`` and the theory
    columns (`_theory`); with `out` and `resume`, rows stored before are included.
    """
    if not isinstance(sweep, Sweep):
        kind = type(sweep).__name__
        raise ValueError(f"sweep must be a Sweep (from product / zipped); got {kind}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}.")
    members = sweep.members()
    columns = COLUMNS + (("reduced_time_ratio",) if reduced else ())
    config = {
        "engine_format": FORMAT,
        "reduced": bool(reduced),
        "user_data": _fingerprint(sweep.objective),
    }
    mode = "resume" if resume else "overwrite" if overwrite else "new"
    store, done, earlier = _open_store(out, mode, columns, config, members)
    try:
        todo = [m for m in members if member_key(m) not in done]
        rows = _solve_all(todo, sweep.objective, chunk_size, shard, reduced, store, progress,
                          on_chunk)  # fmt: skip
    finally:
        if store is not None:
            store.close()
    return to_frame(earlier, rows, columns)


def _open_store(out, mode, columns, config, members) -> tuple[Store | None, set, list[dict]]:
    """(store, keys of the members stored, rows stored before) for `out` (None: no store).

    With several processes (`jax.distributed`) only process 0 opens the store and writes: the
    store has one writer (its ``flock``), and every process holds the same rows. The others
    take from process 0 whether it opened the store and which members are stored, so that all
    solve the same members (they must make the same calls), and read the rows stored before
    from ``results.csv`` (unchanged until the first chunk is gathered from every process).
    """
    if out is None:
        return None, set(), []
    if jax.process_count() == 1:
        store = Store(out, columns=columns, key_columns=AXIS_NAMES, config=config, mode=mode)
        return store, store.done, store.rows
    store, failure = None, None
    if is_main_process():
        try:
            store = Store(out, columns=columns, key_columns=AXIS_NAMES, config=config, mode=mode)
        except Exception as err:  # raised below, once every process knows
            failure = err
    shared = np.zeros(len(members) + 2, np.int32)
    if store is not None:
        shared[0], shared[1] = 1, len(store.rows)
        shared[2:] = [member_key(m) in store.done for m in members]
    shared = from_main_process(shared)
    if failure is not None:
        raise failure
    if not shared[0]:
        raise SweepError(f"process 0 could not open the sweep folder {out} (see its error).")
    if store is not None:
        return store, store.done, store.rows
    done = {member_key(m) for m, stored in zip(members, shared[2:], strict=True) if stored}
    earlier = read_stored(out)[1] if shared[1] else []
    if len(earlier) != shared[1]:
        raise SweepError(f"{out}: process 0 found {shared[1]} stored rows, this process "
                         f"{len(earlier)}; is the folder shared by every process?")  # fmt: skip
    return None, done, earlier


def _solve_all(todo, user, chunk_size, shard, reduced, store, progress, on_chunk) -> list[dict]:
    from tqdm import tqdm

    if isinstance(shard, jax.sharding.Mesh):
        mesh_n = shard.size
    else:
        mesh_n = jax.device_count() if shard is True or shard == "auto" else 1
    rows: list[dict] = []
    with tqdm(total=len(todo), file=sys.stderr, disable=not progress, unit="member",
              desc="sweep") as bar:  # fmt: skip
        for structure, group, steps in _groups(todo, user):
            release_compiled_if_crowded()  # many structures in one process (its docstring)
            bar.set_description(f"sweep L={structure['depth']} L_f={structure['fusion_layer']}")
            for start, stop, size in chunks(len(group), chunk_size, mesh_n):
                part = group[start:stop]
                padded = part + [part[-1]] * (size - len(part))
                new = solve_chunk(structure, padded, user, n_steps=steps, shard=shard,
                                  reduced=reduced)[: len(part)]  # fmt: skip
                if store is not None:
                    store.append(new)
                rows += new
                bar.update(len(new))
                if on_chunk is not None:
                    on_chunk(new)
    return rows
