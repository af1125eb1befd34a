"""The sweep folder store: ``results.csv``, ``config.json`` and ``.lock`` in one folder.

`Store(out_dir, columns=, key_columns=, config=, mode=)` opens the folder; `append(rows)` adds
one chunk of rows. Rules, each against lost or mixed data:

- One writer: the store holds an exclusive non-blocking ``flock`` on ``.lock`` (holding its
  pid) until `close()` or process death; the descriptor is close-on-exec.
- No symbolic link is followed: files in the folder are opened with ``O_NOFOLLOW``; a link is
  refused. ``config.json`` is written to a uniquely named temporary file (``O_EXCL``), fsynced
  and renamed over it.
- Nothing is replaced without a flag: mode ``"new"`` refuses a folder with something to lose (a
  complete row or another header in ``results.csv``, or a ``config.json`` other than its own);
  ``"overwrite"`` moves the old ``results.csv`` and ``config.json`` into
  ``replaced-<UTC time>/``; ``"resume"`` continues a sweep with the same columns and config.
- A cut-off last record (a crash mid-write) is truncated away on opening, with a warning.
- `append` writes the chunk (after the header, into an empty file) with one buffer on an
  ``O_APPEND`` descriptor, then fsyncs; a write failing part way is truncated back.
- Every I/O failure is one `SweepError` line naming the path.

Cells are `multimodal_dln._io.fmt_cell` strings (floats as ``repr``, NaN and None empty,
booleans ``True`` / ``False``) quoted by the `csv` module. On resume `rows` holds the stored
cells as raw strings, converted by the caller; as the caller's key cells are `fmt_cell` strings
too, equal key strings are equal values, which is how `done` is matched.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno as _errno
import fcntl
import io
import json
import os
import secrets
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import dumps, fmt_cell
from ._files import (
    SweepError,
    _complete_length,
    _open,
    _os_error,
    _read,
    _records,
    _same,
    _strerror,
    _write_all,
)

__all__ = ["FORMAT", "Store", "SweepError"]

FORMAT = 1
"""The version of the folder layout, stored in ``config.json`` under ``"format"``."""

_MODES = ("new", "resume", "overwrite")
_UNREADABLE = object()  # a config.json that is not JSON (something "new" must not replace)


class Store:
    """A sweep folder opened for writing (see the module docstring).

    `rows` holds the rows found in ``results.csv`` when the store was opened (dicts of column
    name to raw cell string; empty unless resuming), `done` the key tuples (the raw strings of
    `key_columns`) of every row in the file, those appended since included. `mode` is
    ``"new"``, ``"resume"`` or ``"overwrite"``. Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        columns: Sequence[str],
        key_columns: Sequence[str],
        config: Mapping,
        mode: str = "new",
    ):
        self.columns, self.key_columns = tuple(columns), tuple(key_columns)
        _check_arguments(self.columns, self.key_columns, config, mode)
        self.mode = mode
        self.out_dir = Path(out_dir)
        self.results_path = self.out_dir / "results.csv"
        self.config_path = self.out_dir / "config.json"
        self.lock_path = self.out_dir / ".lock"
        self.config = json.loads(dumps({**config, "format": FORMAT, "columns": self.columns}))
        self.rows: list[dict] = []
        self.done: set[tuple] = set()
        self._size = 0
        self._lock_fd: int | None = None
        self._make_dir()
        try:
            self._lock()
            self._load(mode)
        except BaseException:
            self.close()
            raise

    # -- opening --------------------------------------------------------------------------------
    def _make_dir(self) -> None:
        out = self.out_dir
        if os.path.lexists(out) and not out.is_dir():
            raise SweepError(f"cannot create {out}: it exists and is not a folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _os_error("create", out, err) from None

    def _lock(self) -> None:
        fd = _open(self.lock_path, os.O_RDWR | os.O_CREAT, "create")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if err.errno in (_errno.EWOULDBLOCK, _errno.EAGAIN, _errno.EACCES):
                raise SweepError(
                    f"another sweep is writing to {self.out_dir} (pid {holder}); wait for it to "
                    "finish or choose another output folder"
                ) from None
            raise _os_error("lock", self.lock_path, err) from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as err:
            raise _os_error("write", self.lock_path, err) from None

    def _load(self, mode: str) -> None:
        data = _read(self.results_path) or b""
        complete = _complete_length(data)
        records = _records(self.results_path, data[:complete], strict=mode == "resume")
        stored = self._stored_config()
        n_rows = max(len(records) - 1, 0)
        other_header = bool(records) and records[0][1] != list(self.columns)
        other_config = stored is not None and not _same(stored, self.config)
        if mode == "new" and (n_rows or other_header or other_config):
            raise SweepError(
                f"{self.out_dir} already holds a sweep ({n_rows} rows); pass resume=True "
                "(--resume) to continue it or overwrite=True (--overwrite) to replace it (the "
                "old files are kept in replaced-<time>/)"
            )
        if mode == "resume":
            self._resume(records, stored)
        if complete < len(data):
            warnings.warn(
                f"{self.results_path}: dropped {len(data) - complete} bytes of an incomplete "
                "last line (a write cut off mid-row)",
                stacklevel=3,
            )
            self._truncate(complete)  # also before moving a file aside: recovered, not torn
        if mode == "overwrite":
            self._move_aside()
        elif mode == "new" and complete:
            self._truncate(0)  # a header, perhaps a cut-off row, no complete row
        self._size = complete if mode == "resume" else 0
        self._write([], create=True)  # the header, into a new or empty file
        if mode != "resume" or stored is None:
            self._write_config()  # (its folder fsync also covers a new results.csv)

    def _stored_config(self) -> Any:
        raw = _read(self.config_path)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if self.mode != "resume":
                return _UNREADABLE
            raise SweepError(f"cannot read {self.config_path}: not valid JSON ({err})") from None

    def _resume(self, records: list[tuple[int, list[str]]], stored: Any) -> None:
        """Check the stored header and config against this run; load `rows` and `done`."""
        where = f"cannot resume the sweep in {self.out_dir}"
        if records:
            header = records[0][1]
            for i in range(max(len(header), len(self.columns))):
                old = header[i] if i < len(header) else "(none)"
                new = self.columns[i] if i < len(self.columns) else "(none)"
                if old != new:
                    raise SweepError(
                        f"{where}: results.csv column {i + 1} is {old!r}, this sweep's is "
                        f"{new!r}; use the same columns or another output folder"
                    )
        if stored is not None:
            if not isinstance(stored, dict):
                raise SweepError(f"{where}: {self.config_path} does not hold a JSON object")
            for key, new in self.config.items():
                if key not in stored or not _same(stored[key], new):
                    old = f"{key} = {stored[key]!r}" if key in stored else f"no {key}"
                    raise SweepError(
                        f"{where}: config.json has {old}, this run has {key} = {new!r}; use "
                        "the same settings or another output folder"
                    )
        lines: dict[tuple, int] = {}
        for line, rec in records[1:]:
            if len(rec) != len(self.columns):
                raise SweepError(
                    f"{where}: {self.results_path} line {line} has {len(rec)} cells, the header "
                    f"{len(self.columns)}; the file was changed outside the sweep"
                )
            row = dict(zip(self.columns, rec, strict=True))
            key = tuple(row[k] for k in self.key_columns)
            if key in lines:
                raise SweepError(
                    f"{where}: {self.results_path} lines {lines[key]} and {line} hold the same "
                    f"member {key}; remove one of them"
                )
            lines[key] = line
            self.rows.append(row)
        self.done = set(lines)

    def _truncate(self, size: int) -> None:
        fd = _open(self.results_path, os.O_WRONLY, "write")
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as err:
            raise _os_error("write", self.results_path, err) from None
        finally:
            os.close(fd)

    def _move_aside(self) -> None:
        """Move results.csv and config.json (those present) into a new replaced-<UTC time>/."""
        present = [p for p in (self.results_path, self.config_path) if os.path.lexists(p)]
        if not present:
            return
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        dest = self.out_dir / f"replaced-{stamp}"
        try:
            os.mkdir(dest)
            for p in present:
                os.rename(p, dest / p.name)
            self._fsync_dir()
        except OSError as err:
            raise _os_error("move the previous sweep into", dest, err) from None

    def _write_config(self) -> None:
        text = (json.dumps(self.config, indent=2, allow_nan=False) + "\n").encode()
        tmp = self.out_dir / f".config.json.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        fd = _open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "create")
        try:
            try:
                _write_all(fd, text)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.config_path)
            self._fsync_dir()
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _os_error("write", self.config_path, err) from None

    def _fsync_dir(self) -> None:
        fd = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- writing --------------------------------------------------------------------------------
    def append(self, rows: Sequence[Mapping]) -> None:
        """Append `rows` (dicts of column -> value; a missing column is an empty cell) to
        ``results.csv`` in one write, then fsync. A row with a column the store does not have,
        or with the key of a row already stored, is refused (`ValueError`) before writing."""
        if self._lock_fd is None:
            raise ValueError(f"the sweep store for {self.out_dir} is closed")
        keys = set(self.done)
        for r in rows:
            extra = [c for c in r if c not in self.columns]
            if extra:
                raise ValueError(f"row has columns the store does not have: {extra}")
            missing = [k for k in self.key_columns if k not in r]
            if missing:
                raise ValueError(f"row lacks the key columns {missing}")
            key = tuple(fmt_cell(r[k]) for k in self.key_columns)
            if key in keys:
                raise ValueError(f"a row for member {key} is already stored or in this chunk")
            keys.add(key)
        self._write(rows)
        self.done = keys

    def _write(self, rows: Sequence[Mapping], create: bool = False) -> None:
        kept = len(self.done)
        path = self.results_path
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0)
        fd = _open(path, flags, "create" if create else "write", kept)
        try:
            size = os.fstat(fd).st_size
            if size != self._size:
                raise SweepError(
                    f"cannot write {path}: it was changed outside the sweep ({self._size} bytes "
                    f"expected, {size} found); the {kept} rows written before are kept"
                )
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            if size == 0:
                writer.writerow(self.columns)
            writer.writerows([fmt_cell(r.get(c)) for c in self.columns] for r in rows)
            data = buf.getvalue().encode("utf-8")
            if data:
                self._write_or_undo(fd, data, size, kept)
            self._size = size + len(data)
        finally:
            os.close(fd)

    def _write_or_undo(self, fd: int, data: bytes, size: int, kept: int) -> None:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as err:
            undo = ""
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            except OSError as err2:
                undo = f" (and the partial chunk could not be removed: {_strerror(err2)})"
            raise SweepError(
                f"cannot write {self.results_path}: {_strerror(err)}; the {kept} rows written "
                f"before are kept{undo}"
            ) from None

    # -- closing --------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the lock (the ``.lock`` file stays). Closing twice is harmless."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the lock releases the flock

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            self.close()


def _check_arguments(columns, key_columns, config, mode) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}; got {mode!r}")
    if not columns or len(set(columns)) != len(columns) or not all(type(c) is str for c in columns):
        raise ValueError(f"columns must be distinct strings, at least one; got {list(columns)}")
    if not key_columns or not set(key_columns) <= set(columns):
        raise ValueError(f"key_columns must be some of the columns; got {list(key_columns)}")
    clash = {"format", "columns"} & set(config)
    if clash:
        raise ValueError(f"config may not hold the store's own keys {sorted(clash)}")
