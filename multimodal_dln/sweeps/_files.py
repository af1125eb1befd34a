"""Low-level file operations of the sweep store (`_store`): opening without following
symbolic links, whole writes, finding the last complete CSV record, and the one-line
`SweepError` for every I/O failure."""

from __future__ import annotations

import csv
import errno as _errno
import io
import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["NOFOLLOW", "SweepError"]

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class SweepError(Exception):
    """A one-line user-facing error about a sweep folder (bad path, lock held, I/O failure,
    mismatched resume). ``str(err)`` is the whole message; it names the path."""


def _strerror(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else str(err)


def _os_error(verb: str, path: Path, err: OSError, kept: int | None = None) -> SweepError:
    if err.errno == _errno.ELOOP:
        return SweepError(
            f"{path} is a symbolic link; refusing to write through it (remove the link or "
            "choose another output folder)"
        )
    tail = "" if kept is None else f"; the {kept} rows written before are kept"
    return SweepError(f"cannot {verb} {path}: {_strerror(err)}{tail}")


def _open(path: Path, flags: int, verb: str, kept: int | None = None, mode: int = 0o644) -> int:
    """`os.open` without following a link at `path`; a regular file or a `SweepError`."""
    try:
        fd = os.open(path, flags | NOFOLLOW, mode)
    except OSError as err:
        raise _os_error(verb, path, err, kept) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SweepError(f"cannot {verb} {path}: it is not a regular file")
    return fd


def _read(path: Path) -> bytes | None:
    """The bytes of `path`, or None when there is no such file (the store holds the lock)."""
    if not os.path.lexists(path):
        return None
    fd = _open(path, os.O_RDONLY, "read")
    try:
        return b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
    except OSError as err:
        raise _os_error("read", path, err) from None
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(_errno.ENOSPC, os.strerror(_errno.ENOSPC))
        view = view[n:]


def _complete_length(data: bytes) -> int:
    """The length of `data` up to its last complete CSV record: the last line end outside a
    quoted cell (a quote character only opens, closes or doubles inside a quoted cell)."""
    if b'"' not in data:
        return data.rfind(b"\n") + 1
    end = pos = 0
    for i, part in enumerate(data.split(b'"')):
        j = part.rfind(b"\n") if i % 2 == 0 else -1
        if j >= 0:
            end = pos + j + 1
        pos += len(part) + 1
    return end


def _records(path: Path, data: bytes, strict: bool) -> list[tuple[int, list[str]]]:
    """The non-blank CSV records of `data` with their line numbers (not UTF-8: an error if
    `strict`, else undecodable bytes replaced, enough to count rows)."""
    try:
        text = data.decode("utf-8", "strict" if strict else "replace")
    except UnicodeDecodeError as err:
        raise SweepError(f"cannot read {path}: not UTF-8 text (byte {err.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    return [(reader.line_num, rec) for rec in reader if rec]


def _same(a: Any, b: Any) -> bool:
    """Equality of JSON values that keeps booleans apart from numbers (floats exactly)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
