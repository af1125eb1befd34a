"""The sweep results as a tidy pandas DataFrame, and reading a sweep folder back (`load`).

One row per member: every axis (`_axes.AXIS_NAMES`; empty where an axis does not apply),
the measurements, ``success`` / ``status`` / ``reason``, solver statistics (``t_end``,
``num_steps``) and the theory columns. Integer axes use pandas' nullable ``Int64``, strings
``object`` (None where not applicable). A row whose status is not OK has NaN phase columns
whatever a file holds (docs/theory.md §7).
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from .._status import Status
from ._axes import AXES, AXIS_NAMES
from ._solve_chunk import PHASE_COLUMNS, RESULT_COLUMNS
from ._store import SweepError

__all__ = ["COLUMNS", "load", "read_stored", "to_frame"]

COLUMNS: tuple[str, ...] = AXIS_NAMES + RESULT_COLUMNS
_KIND = {a.name: a.kind for a in AXES} | {
    "num_steps": "int", "success": "bool", "status": "str", "reason": "str",
}  # fmt: skip


def _parse(col: str, s: str):
    kind = _KIND.get(col, "float")
    if s == "":
        return math.nan if kind == "float" else None
    if kind == "int":
        return int(s)
    if kind == "bool":
        if s not in ("True", "False"):
            raise ValueError(f"{col}: bad boolean {s!r}")
        return s == "True"
    return s if kind == "str" else float(s)


def parse_row(raw: dict, columns) -> dict:
    """A stored row (strings) as typed values; phase columns NaN unless status is OK."""
    row = {c: _parse(c, raw.get(c, "")) for c in columns}
    if row["status"] not in Status.__members__:
        raise ValueError(f"unknown status {row['status']!r}")
    if row["success"] != (row["status"] == "OK"):
        raise ValueError(f"success {row['success']} contradicts status {row['status']}")
    if not row["success"]:
        row.update(dict.fromkeys(PHASE_COLUMNS, math.nan))
    return row


def to_frame(stored, rows, columns):
    """DataFrame of `stored` rows (strings, from a store) followed by new `rows` (values)."""
    import pandas as pd

    typed = [parse_row(r, columns) for r in stored] + [dict(r) for r in rows]
    df = pd.DataFrame(typed, columns=list(columns))
    for c in columns:
        kind = _KIND.get(c, "float")
        if kind == "int":
            df[c] = pd.array([None if v is None or v != v else int(v) for v in df[c]], "Int64")
        elif kind == "float":
            df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), math.nan))
        elif kind == "bool":
            df[c] = df[c].astype(bool)
    return df


def load(out_dir: str | os.PathLike):
    """Read a sweep folder (``results.csv``) back as the DataFrame `run` returned.

    A last line cut off by a crash is skipped; a malformed row raises a one-line
    `SweepError` naming the file and line."""
    header, stored = read_stored(out_dir)
    return to_frame(stored, [], header)


def read_stored(out_dir: str | os.PathLike) -> tuple[tuple[str, ...], list[dict]]:
    """The header and the rows (raw cell strings, checked) of a sweep folder's
    ``results.csv``, read without taking the store's lock (see `load`)."""
    path = Path(out_dir)
    path = path / "results.csv" if path.is_dir() else path
    try:
        text = path.read_text()
    except OSError as e:
        raise SweepError(f"cannot read {path}: {e.strerror or e}") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a torn last line: never a result
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(reader.fieldnames or ())
    if header[: len(COLUMNS)] != COLUMNS:
        raise SweepError(
            f"{path} is not a sweep results file of this version: expected columns "
            f"{', '.join(COLUMNS)}; found {', '.join(header) or 'none'}."
        )
    stored = []
    for line, raw in enumerate(reader, start=2):
        try:
            parse_row(raw, header)
        except (ValueError, TypeError) as e:
            raise SweepError(f"{path}, line {line}: {e}") from None
        stored.append(raw)
    return header, stored
