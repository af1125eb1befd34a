"""Parameter sweeps on the toy data, chunked, batched, resumable, written row by row.

A sweep is the cartesian product of a grid (fusion layer L_f, correlation rho, variance ratio
r = sigma_A / sigma_B, initialization scale u0; Zhang et al. 2024, toy data; docs/theory.md §1)
with a set of seeds. Members are grouped by fusion layer (the network structure is static, so
one compiled solver per L_f) and, within a group, cut into chunks of a fixed size; the last
chunk is padded by repeating its last member so every solve has the same shapes and nothing is
recompiled. Each chunk is one `simulate_toy` call.

Reproducibility: a member's network depends on its seed only (the experiments' seed policy,
`_batch`), never on its position in a chunk, and the batched solvers treat members
independently, so a result does not depend on the chunk size or on which other members share
its chunk.

Robustness: after every chunk its rows are appended to ``results.csv`` and fsynced (`store`),
so an interrupted sweep loses at most the chunk in progress; ``resume=True`` skips every member
already in the file. ``config.json`` records the settings; resuming with other settings is
refused.

Trust: every row carries the member's `Status` name and reason (``status``, ``reason``), its
``t_end`` and ``num_steps``; the phase columns of a member that is not OK are empty (NaN), and
summaries and figures use successful members only (docs/theory.md §7).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._constants import AUTHORS_LR
from .._io import write_json
from .._validation import check_positive_int
from ._batch import pad_list
from .settings import normalize_seeds, validate_grid, validate_settings
from .store import CSV_COLUMNS, append_rows, prepare_out_dir, row_key, write_config
from .summary import summarize, swept_axes
from .toy import MemberConfig, gd_n_steps, horizons, simulate_toy, warn_diverged

__all__ = ["SweepResult", "members", "run_sweep"]

_SOLVE_KEYS = ("depth", "width", "init", "method", "lr", "noise", "n_save", "t_max")


@dataclass
class SweepResult:
    """What `run_sweep` returns. `rows` holds every row in ``results.csv`` (earlier runs
    included when resuming); `n_run` how many members this call simulated."""

    out_dir: Path
    rows: list[dict]
    summary: dict
    n_run: int
    n_skipped: int
    wall_time_s: float
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def csv_path(self) -> Path:
        return self.out_dir / "results.csv"


def members(grid: Mapping[str, list], seeds: Sequence[int]) -> list[MemberConfig]:
    """The cartesian product grid x seeds, in grid order (fusion_layer slowest, seed fastest)."""
    return [
        MemberConfig(lf, rho, ratio, u0, seed)
        for lf, rho, ratio, u0, seed in itertools.product(
            grid["fusion_layer"], grid["rho"], grid["ratio"], grid["init_scale"], seeds
        )
    ]


def run_sweep(
    grid: Mapping[str, Any],
    *,
    depth: int,
    width: int,
    seeds: int | Sequence[int],
    init: str = "random",
    method: str = "flow",
    lr: float = AUTHORS_LR,
    out_dir: str | os.PathLike,
    resume: bool = False,
    chunk_size: int = 64,
    progress: bool = True,
    noise: float = 0.0,
    n_save: int = 512,
    t_max: float | None = None,
    overwrite: bool = False,
    figure: bool = True,
    on_chunk: Callable[[list[dict]], None] | None = None,
    names: Mapping[str, str] | None = None,
) -> SweepResult:
    """Run (or resume) a toy-data sweep; results go to `out_dir`.

    **Arguments:**

    - `grid`: dict with lists (or single values) for ``fusion_layer`` (1..depth), ``rho``
      (in (-1, 1)), ``ratio`` (sigma_A / sigma_B > 0) and ``init_scale`` (u0 > 0).
    - `depth`, `width`: network depth L and hidden width.
    - `seeds`: number of seeds N (seeds 0..N-1) or an explicit list of seeds; every grid point
      is run once per seed. A member's network depends only on its seed.
    - `init`: "random" (authors' Gaussian scheme), "aligned" (balanced rank-one, aligned with
      the solution) or "entrywise" (every entry N(0, u0^2)).
    - `method`: "flow" (gradient flow, diffrax) or "gd" (gradient descent with learning rate
      `lr`; times reported as steps x lr). `lr` is ignored for flow.
    - `out_dir`: directory for ``results.csv``, ``config.json``, ``summary.json`` and
      ``time_ratio.png`` (created if needed).
    - `resume`: continue an existing sweep: members already in ``results.csv`` are skipped; the
      grid and seeds may differ (e.g. be extended) but the settings may not.
    - `chunk_size`: members per batched solve (fixed: the last chunk is padded).
    - `progress`: show a tqdm progress bar on stderr.
    - `noise`: label-noise std of the toy data.
    - `t_max`: horizon in gradient-flow time, kept as given (members not converged by then are
      NOT_CONVERGED); for GD it sets n_steps = ceil(t_max / lr). Default None: the estimated
      horizon, continued for unconverged members (see `simulate_toy`). A setting that changes
      results: resuming with another `t_max` is refused.
    - `overwrite`: delete this directory's previous sweep files first (ignored with `resume`).
    - `figure`: write ``time_ratio.png`` at the end (`figures.plot_time_ratio`).
    - `on_chunk`: called with each finished chunk's rows, after they are on disk.
    - `names`: display names for parameters in error messages (the CLI passes its flags).

    **Returns:** a `SweepResult`. Rows are appended to ``results.csv`` after every chunk
    (flushed and fsynced), so an interrupted sweep keeps every finished chunk.
    """
    t_start = time.perf_counter()
    settings, grid, seed_list, chunk_size = _validated(
        grid, seeds, chunk_size, names, depth=depth, width=width, init=init, method=method,
        lr=lr, noise=noise, t_max=t_max, n_save=n_save,
    )  # fmt: skip
    out = Path(out_dir)
    existing = prepare_out_dir(out, settings, resume=resume, overwrite=overwrite, names=names)
    write_config(out / "config.json", settings, grid, seed_list, chunk_size, resume)

    done = {row_key(r) for r in existing}
    everyone = members(grid, seed_list)
    todo = [m for m in everyone if m.key not in done]
    new_rows = _run_members(
        todo, everyone, settings, chunk_size, out / "results.csv", progress, on_chunk
    )
    index = {m.key: i for i, m in enumerate(everyone)}
    warn_diverged(
        new_rows,
        [index[row_key(r)] for r in new_rows],
        settings["lr"] or math.nan,
        where="sweep member",
    )
    n_run, n_skipped = len(new_rows), len(everyone) - len(todo)
    return _finish_sweep(out, existing + new_rows, settings, n_run, n_skipped, t_start, figure)


def _validated(grid, seeds, chunk_size, names, *, n_save, **settings_kw):
    """(settings, grid, seeds, chunk size) checked and normalized (errors use `names`)."""
    settings = validate_settings(**settings_kw, names=names)
    settings["n_save"] = int(n_save)
    grid = validate_grid(grid, settings["depth"], names)
    seed_list = normalize_seeds(seeds, names)
    return settings, grid, seed_list, check_positive_int("chunk_size", chunk_size)


def _gd_budget(everyone, settings, chunk_size) -> int:
    """One GD step budget per fusion layer, from every member of the grid (done or not), so
    chunking and interruption/resume do not change the GD save grid."""
    hs = [
        horizons(
            pad_list(everyone[i : i + chunk_size], chunk_size),
            depth=settings["depth"],
            width=settings["width"],
            init=settings["init"],
            noise=settings["noise"],
        )
        for i in range(0, len(everyone), chunk_size)
    ]
    return gd_n_steps(np.concatenate(hs), settings["lr"])


def _run_members(todo, everyone, settings, chunk_size, csv_path, progress, on_chunk):
    """Solve `todo` chunk by chunk, appending each chunk's rows to `csv_path`; return them."""
    from tqdm import tqdm

    new_rows: list[dict] = []
    header_needed = not (csv_path.exists() and csv_path.stat().st_size > 0)
    bar = tqdm(
        total=len(todo),
        file=sys.stderr,
        disable=not progress,
        unit="member",
        desc="sweep",
        leave=True,
    )
    try:
        for lf in dict.fromkeys(m.fusion_layer for m in everyone):
            group = [m for m in todo if m.fusion_layer == lf]
            if not group:
                continue
            bar.set_description(f"sweep L_f={lf}")
            budget = None
            if settings["method"] == "gd" and settings["t_max"] is None:
                same_lf = [m for m in everyone if m.fusion_layer == lf]
                budget = _gd_budget(same_lf, settings, chunk_size)
            for i in range(0, len(group), chunk_size):
                res = simulate_toy(
                    group[i : i + chunk_size],
                    **{k: settings[k] for k in _SOLVE_KEYS},
                    pad_to=chunk_size,
                    on_divergence="ignore",
                    gd_budget=budget,
                )
                rows = [{c: r[c] for c in CSV_COLUMNS} for r in res.rows]
                append_rows(csv_path, rows, header=header_needed)
                header_needed = False
                new_rows.extend(rows)
                bar.update(len(rows))
                if on_chunk is not None:
                    on_chunk(rows)
    finally:
        bar.close()
    return new_rows


def _finish_sweep(out, all_rows, settings, n_run, n_skipped, t_start, figure) -> SweepResult:
    """Summary (and figure) of every row in the folder; writes summary.json."""
    summary = summarize(all_rows)
    summary["settings"] = settings
    summary["n_run"] = n_run
    summary["n_skipped"] = n_skipped
    summary["wall_time_s"] = time.perf_counter() - t_start
    files = {
        "results": out / "results.csv",
        "config": out / "config.json",
        "summary": out / "summary.json",
    }
    if figure and all_rows:
        from .figures import plot_time_ratio

        x, hue = swept_axes(all_rows)
        fig_path = out / "time_ratio.png"
        plot_time_ratio(all_rows, x=x, hue=hue, path=fig_path)
        files["figure"] = fig_path
        summary["figure"] = fig_path.name
    write_json(out / "summary.json", summary)
    return SweepResult(out, all_rows, summary, n_run, n_skipped, summary["wall_time_s"], files)
