"""The toy-sweep store: a folder with ``results.csv`` (one row per member), ``config.json``
(settings, grid, seeds) and ``summary.json``.

Rows are appended to ``results.csv`` after every chunk, flushed and fsynced (the experiments'
one CSV writer, `_io.write_csv`), so an interrupted sweep loses at most the chunk in progress.
Reading is strict (`read_results`): typed columns, a cut-off last line dropped, a row whose
`success` contradicts its `status` refused, and the phase columns of a member that is not OK
NaN whatever the file holds (docs/theory.md §7). A file written before per-member status
columns existed is refused, since its failed rows cannot be told apart.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import read_csv, rewrite_csv, write_csv, write_json
from .._status import Status
from .settings import SETTING_KEYS, display
from .toy import PHASE_COLUMNS

__all__ = [
    "CSV_COLUMNS",
    "LEGACY_CSV_COLUMNS",
    "append_rows",
    "load_for_resume",
    "prepare_out_dir",
    "read_results",
    "row_key",
    "write_config",
]

CSV_COLUMNS = (
    "fusion_layer",
    "depth",
    "width",
    "init",
    "method",
    "lr",
    "rho",
    "ratio",
    "init_scale",
    "seed",
    "t_A",
    "t_B",
    "time_ratio",
    "misattribution",
    "plateau_loss",
    "final_loss",
    "success",
    "status",
    "reason",
    "t_end",
    "num_steps",
    "theory_time_ratio",
    "rel_error",
)
LEGACY_CSV_COLUMNS = tuple(
    c for c in CSV_COLUMNS if c not in ("status", "reason", "t_end", "num_steps")
)
"""The column set written before per-member status codes (no status, reason, t_end,
num_steps): its failed rows may hold plausible-looking phase times, so such a file is not read."""

_INT_COLUMNS = ("fusion_layer", "depth", "width", "seed", "num_steps")
_STR_COLUMNS = ("init", "method", "status", "reason")
_BOOL_COLUMNS = ("success",)
_FILES = ("results.csv", "config.json", "summary.json", "time_ratio.png")


def row_key(row: Mapping[str, Any]) -> tuple:
    """(fusion_layer, rho, ratio, init_scale, seed): a member's identity in the store."""
    return (
        int(row["fusion_layer"]),
        float(row["rho"]),
        float(row["ratio"]),
        float(row["init_scale"]),
        int(row["seed"]),
    )


def _cell(col: str, s: str):
    if col in _INT_COLUMNS:
        return int(s)
    if col in _STR_COLUMNS:
        if not s:
            raise ValueError(f"empty {col}")
        return s
    if col in _BOOL_COLUMNS:
        if s not in ("True", "False"):
            raise ValueError(f"bad boolean {s!r}")
        return s == "True"
    return float(s) if s.strip() else math.nan  # empty: no value


def _parse_row(raw: Mapping[str, str]) -> dict:
    row: dict[str, Any] = {}
    for col in CSV_COLUMNS:
        s = raw.get(col)
        if s is None:
            raise ValueError(f"missing column {col}")
        row[col] = _cell(col, s)
    if row["status"] not in Status.__members__:
        raise ValueError(f"unknown status {row['status']!r}")
    if row["success"] != (row["status"] == "OK"):
        raise ValueError(f"success {row['success']} contradicts status {row['status']}")
    if not row["success"]:
        row.update(dict.fromkeys(PHASE_COLUMNS, math.nan))  # never a number for a failed member
    return row


def _header_checker(path: Path):
    def check(header: tuple[str, ...]) -> None:
        if header[: len(LEGACY_CSV_COLUMNS)] == LEGACY_CSV_COLUMNS and "status" not in header:
            raise ValueError(
                f"{path} was written by an older multimodal_dln without per-member status "
                "columns (status, reason, t_end, num_steps), so its failed rows cannot be told "
                "apart; run the sweep again into a new folder (or delete this one)."
            )
        if header[: len(CSV_COLUMNS)] != CSV_COLUMNS:
            raise ValueError(
                f"{path} does not look like a multimodal_dln sweep results file: expected "
                f"columns {', '.join(CSV_COLUMNS)}; found {', '.join(header)}."
            )

    return check


def _read(path: Path, *, strict: bool = False) -> tuple[list[dict], int]:
    return read_csv(path, _parse_row, strict=strict, check_header=_header_checker(path))


def read_results(path: str | os.PathLike, *, strict: bool = False) -> list[dict]:
    """Read a sweep's ``results.csv`` (or its directory) into a list of typed row dicts.

    Incomplete lines (e.g. from a crash mid-write) are skipped, or raise with `strict=True`.
    Empty cells are NaN; the phase columns (`PHASE_COLUMNS`) of a row whose `status` is not OK
    are NaN whatever the file holds. A file written before per-member status codes (no
    `status` column) is refused with a one-line `ValueError`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    rows, _ = _read(path, strict=strict)
    return rows


def append_rows(csv_path: Path, rows: list[dict], *, header: bool) -> None:
    """Append `rows` (store columns only) to `csv_path`, flushed and fsynced."""
    write_csv(csv_path, rows, CSV_COLUMNS, append=True, header=header)


def prepare_out_dir(out: Path, settings, *, resume, overwrite, names) -> list[dict]:
    """Create `out`; return the rows to keep (resume), after refusing a clash."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{display('out_dir', names)} must be a directory; {out} is a file.")
    out.mkdir(parents=True, exist_ok=True)
    csv_path, cfg_path = out / "results.csv", out / "config.json"
    if resume:
        return load_for_resume(csv_path, cfg_path, settings, names)
    if overwrite:
        for p in (out / f for f in _FILES):
            if p.exists():
                p.unlink()
    elif csv_path.exists() and csv_path.stat().st_size > 0:
        raise ValueError(
            f"{out} already holds a sweep (results.csv); pass resume=True (CLI: --resume) to "
            "continue it, or choose another output directory."
        )
    return []


def write_config(cfg_path: Path, settings, grid, seed_list, chunk_size, resume) -> None:
    """config.json: settings, grid, seeds, chunk size, creation and update times (UTC); a
    resumed sweep with another grid keeps the earlier grids under "previous_grids"."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    previous = json.loads(cfg_path.read_text()) if (resume and cfg_path.exists()) else {}
    config = {
        "package": "multimodal_dln",
        "data": "toy",
        "settings": settings,
        "grid": grid,
        "seeds": seed_list,
        "chunk_size": chunk_size,
        "created": previous.get("created", now),
        "updated": now,
        "time_units": "gradient-flow time (tau = 1); for gd, steps x lr",
    }
    if previous.get("grid") and previous.get("grid") != grid:
        config["previous_grids"] = previous.get("previous_grids", []) + [previous["grid"]]
    write_json(cfg_path, config)


def _check_stored_settings(cfg_path: Path, settings: dict, names) -> None:
    if not cfg_path.exists():
        return
    try:
        old = json.loads(cfg_path.read_text()).get("settings", {})
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot resume: {cfg_path} is not valid JSON ({err}).") from None
    diffs = [k for k in SETTING_KEYS if k in old and old[k] != settings[k]]
    if diffs:
        detail = "; ".join(
            f"{display(k, names)}: stored {old[k]!r}, now {settings[k]!r}" for k in diffs
        )
        raise ValueError(
            f"cannot resume the sweep in {cfg_path.parent}: its settings differ ({detail}). Use "
            "the same settings, or another output directory for a new sweep."
        )


def load_for_resume(csv_path: Path, cfg_path: Path, settings: dict, names) -> list[dict]:
    """The stored rows of a sweep to resume, after refusing other settings; incomplete lines
    (a crash mid-write) and duplicates are dropped, rewriting the file if needed."""
    _check_stored_settings(cfg_path, settings, names)
    try:
        rows, bad = _read(csv_path)
    except ValueError as err:
        raise ValueError(f"cannot resume the sweep in {csv_path.parent}: {err}") from None
    for r in rows:
        for k in ("depth", "width", "init", "method"):
            if r[k] != settings[k]:
                raise ValueError(
                    f"cannot resume the sweep in {csv_path.parent}: results.csv holds rows with "
                    f"{display(k, names)} = {r[k]!r}, but this run has {settings[k]!r}."
                )
    unique, seen = [], set()
    for r in rows:
        if row_key(r) not in seen:
            seen.add(row_key(r))
            unique.append(r)
    if bad or len(unique) != len(rows):
        rewrite_csv(csv_path, unique, CSV_COLUMNS)
    return unique
