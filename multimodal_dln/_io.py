"""The package's one JSON writer and one CSV writer / reader (library core: besides the
standard library it imports only NumPy and JAX, never `experiments` or `cli`, which import it).

JSON
----
- `jsonable(obj)`: the one sanitizer. Mappings become dicts with `str` keys, tuples become
  lists, NumPy / JAX scalars and arrays become Python numbers and (nested) lists, NaN and
  +-inf become ``None`` (JSON has no NaN), `pathlib.Path` becomes `str`.
- `dumps(obj, indent=None)`: one JSON text (``allow_nan=False`` after sanitizing).
- `write_json(path, obj, indent=2, newline=True, atomic=True)`: writes `dumps(obj, indent)`
  (plus a final newline); `atomic` writes a temporary file, fsyncs it and renames it over
  `path`, so a reader never sees half a file. The keyword arguments reproduce the files of
  each caller byte for byte (the toy-sweep store: indent 2, newline, atomic).

CSV
---
- `fmt_cell(v, nan="")`: a value as a cell. Floats (Python or NumPy) in their shortest
  round-tripping form (``repr``), so values read back compare equal; NaN (no value) as `nan`
  (an empty cell by default; pass ``nan="nan"`` to spell it out); ``None`` empty; booleans
  ``True`` / ``False``; anything else ``str``.
- `columns_of(rows)`: the union of the rows' keys, in first-seen order.
- `write_csv(path, rows, columns=None, nan="", append=False, header=True)`: one row per dict
  (missing keys are empty cells), flushed and fsynced; `append` adds to an existing file (the
  toy-sweep store appends after every chunk). `rewrite_csv` replaces a file atomically.
- `read_csv(path, parse, strict=False, check_header=None)`: strict reading. A last line without
  a line end (a crash mid-write) is dropped, each row goes through `parse(raw_dict) -> row`
  and a row that raises `ValueError` / `TypeError` is dropped (counted), or, with `strict`,
  raises a one-line `ValueError` naming the file and line. Returns ``(rows, n_bad)``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "columns_of",
    "dumps",
    "fmt_cell",
    "jsonable",
    "read_csv",
    "rewrite_csv",
    "write_csv",
    "write_json",
]


# ------------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """`obj` with NumPy / JAX values as Python numbers or lists and NaN / inf as None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.ndarray, jax.Array)):
        a = np.asarray(obj)
        return jsonable(a.tolist()) if a.ndim else jsonable(a.item())
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    """One JSON text of `jsonable(obj)` (strict JSON: no NaN)."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def write_json(
    path: str | os.PathLike,
    obj: Any,
    *,
    indent: int | None = 2,
    newline: bool = True,
    atomic: bool = True,
) -> Path:
    """Write `dumps(obj, indent)` to `path` (a final newline unless `newline=False`); with
    `atomic`, through a fsynced temporary file renamed over `path`. Returns the path."""
    path = Path(path)
    text = dumps(obj, indent) + ("\n" if newline else "")
    if not atomic:
        path.write_text(text)
        return path
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------------
def fmt_cell(v: Any, nan: str = "") -> str:
    """One CSV cell (see the module docstring)."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (float, np.floating)):
        x = float(v)
        return nan if math.isnan(x) else repr(x)
    return str(v)


def columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys in first-seen order."""
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def write_csv(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    nan: str = "",
    append: bool = False,
    header: bool = True,
) -> Path:
    """Write (or with `append`, add) `rows` under `columns` (default `columns_of(rows)`);
    missing keys are empty cells. Flushed and fsynced before returning the path."""
    path = Path(path)
    cols = list(columns) if columns is not None else columns_of(rows)
    with open(path, "a" if append else "w", newline="") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(cols)
        for r in rows:
            writer.writerow([fmt_cell(r.get(c), nan) for c in cols])
        fh.flush()
        os.fsync(fh.fileno())
    return path


def rewrite_csv(
    path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> Path:
    """Replace `path` by a file of `rows` atomically (a temporary file renamed over it)."""
    path = Path(path)
    tmp = path.with_suffix(".csv.tmp")
    if tmp.exists():
        tmp.unlink()
    write_csv(tmp, rows, columns)
    os.replace(tmp, path)
    return path


def read_csv(
    path: str | os.PathLike,
    parse: Callable[[Mapping[str, str]], dict],
    *,
    strict: bool = False,
    check_header: Callable[[tuple[str, ...]], None] | None = None,
) -> tuple[list[dict], int]:
    """Read `path` row by row through `parse`; returns ``(rows, n_bad)`` (see the module
    docstring). `check_header(columns)` may raise to refuse the file. A missing or empty file
    gives ``([], 0)``."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return [], 0
    with open(path, newline="") as fh:
        lines = fh.read().splitlines(keepends=True)
    bad = 0
    if lines and not lines[-1].endswith(("\n", "\r")):
        # The last line was cut off mid-write: even if it parses, a value may be truncated.
        if strict:
            raise ValueError(f"{path}, line {len(lines)}: incomplete last line (no line end).")
        lines, bad = lines[:-1], 1
    reader = csv.DictReader(lines)
    if check_header is not None:
        check_header(tuple(reader.fieldnames or ()))
    rows = []
    for i, raw in enumerate(reader, start=2):
        try:
            rows.append(parse(raw))
        except (TypeError, ValueError) as err:
            if strict:
                raise ValueError(f"{path}, line {i}: unreadable row ({err}).") from None
            bad += 1
    return rows, bad
