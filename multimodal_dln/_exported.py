"""Stored programs: a solve traced and lowered once is reused by later processes.

JAX's persistent compilation cache (`multimodal_dln._cache`) skips XLA's compilation in a warm
process, but not tracing and lowering, which for one gradient-flow structure take ~2 s on a
2-core CPU (tracing diffrax's solve under `vmap`; benchmarks/results/README.md, "Where a
structure's compile time goes"). Here the lowered program is stored with `jax.export` next to
that cache, and a later process that calls the same program deserializes it instead of
tracing: a toy structure's first `gradient_flow` call in a warm process takes 0.7-0.9 s
instead of 2.3-2.5 s (2-core CPU), and returns the same arrays bit for bit.

What may be stored: only callables that declare it (`exportable = True`: gradient flow's
start values and solve, and compaction's begin, chunk and finish), whose whole behaviour is
their class, their fields and this package's code. A stored program is found by a SHA-256 key of

- the pickled callable (class and every field, e.g. the network's activation) and the
  inputs' structure, shapes, dtypes and non-array values;
- the package's source (every `.py` file), the versions of jax, jaxlib, diffrax, equinox,
  lineax and optimistix, the backend, device kind and the JAX settings that change what is
  traced (float64, default matmul precision, dtype and rank promotion),

so a changed input, option, code or install never meets an old program. Anything that cannot
be keyed, exported, stored or loaded (a callable that does not pickle, an unwritable folder, a
program JAX cannot export, inputs under a trace) falls back to the ordinary jit call: storing
programs only saves time. Files are written once, atomically, and never replaced; they live
in the compilation cache's folder (`MDLN_COMPILATION_CACHE=0` turns both off,
``MDLN_STORED_PROGRAMS=0`` only this).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from ._cache import cache_opted_out

__all__ = ["call_exported", "stored_programs_dir"]

_FORMAT = "mdln-exported-1"
_PACKAGES = ("jax", "jaxlib", "diffrax", "equinox", "lineax", "optimistix")
_CONFIG = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_dtype_promotion",
           "jax_numpy_rank_promotion")  # JAX settings that change what is traced
_MEMORY: dict[str, Any] = {}  # key -> _Program, or None where storing failed (plain jit)
_SOURCE: list[str] = []  # the package source's hash, computed once per process
_KEYS: dict = {}  # (callable, structure, signature) -> key


class _Slot:
    """Where an array sits in a pytree: its shape, dtype and weak type (part of the key), and
    in a stored output skeleton the place an output array goes back to."""

    def __init__(self, x):
        self.shape, self.dtype = tuple(x.shape), str(x.dtype)
        self.weak = bool(getattr(x, "weak_type", False))


class _Program:
    """A deserialized program: flat input arrays -> flat output arrays (jitted once per
    process: tracing it is a single call), and the output skeleton (the output pytree with
    `_Slot`s where its arrays go)."""

    def __init__(self, exported, skeleton):
        self.run, self.skeleton = jax.jit(exported.call), skeleton

    def __call__(self, leaves):
        arrays = iter(self.run(*_committed(leaves)))
        return jax.tree.map(lambda x: next(arrays) if isinstance(x, _Slot) else x, self.skeleton)


def _committed(leaves: list) -> list:
    """The inputs all committed to one device (that of the first committed input, else of the
    first input).

    The jitted deserialized program compiles once per pattern of input placements: a mix of
    committed arrays (outputs of an earlier program, a `device_put`) and uncommitted ones
    (made eagerly) lowers with different argument shardings, so the same solve compiled again
    whenever the pattern changed (measured: a second `gradient_flow` call on the same batch
    compiled its 4-5 s solve again). Committing every input gives one pattern."""
    if all(isinstance(x, jax.Array) and x.committed for x in leaves):
        return leaves
    arrays = [x for x in leaves if isinstance(x, jax.Array)]
    target = next((x.sharding for x in arrays if x.committed), None)
    target = target or (arrays[0].sharding if arrays else None)
    if target is None or len(target.device_set) != 1:  # NumPy only, or over several devices
        return leaves
    return jax.device_put(leaves, target)


def stored_programs_dir() -> Path | None:
    """The folder of stored programs: `mdln-exported/` in JAX's compilation cache folder, or
    None when that cache is off or ``MDLN_STORED_PROGRAMS=0`` (every call traces, as JAX
    does by default)."""
    base = jax.config.jax_compilation_cache_dir
    if not base or cache_opted_out() or os.environ.get("MDLN_STORED_PROGRAMS", "1") == "0":
        return None
    return Path(base) / "mdln-exported"


def call_exported(fn, args: tuple, plain):
    """`fn(*args)` through a stored program when `fn` is exportable, else `plain(fn, *args)`
    (the ordinary jit call); see the module docstring."""
    folder = stored_programs_dir()
    if folder is None or not getattr(fn, "exportable", False):
        return plain(fn, *args)
    flat, treedef = jax.tree.flatten(args)
    if any(isinstance(x, jax.core.Tracer) for x in flat):  # under a caller's trace
        return plain(fn, *args)
    leaves = [x for x in flat if eqx.is_array(x)]
    key = _memo_key(fn, args, flat, treedef)
    if key is None:
        return plain(fn, *args)
    if key not in _MEMORY:
        _MEMORY[key] = _load(folder, key) or _store(folder, key, fn, args)
    program = _MEMORY[key]
    return plain(fn, *args) if program is None else program(leaves)


def _memo_key(fn, args, flat, treedef) -> str | None:
    """`_key`, remembered per (callable, structure, shapes, dtypes, other values) so that
    repeated calls (compaction's chunks) do not pickle and hash again."""
    sig = tuple(
        (x.shape, x.dtype, getattr(x, "weak_type", False)) if eqx.is_array(x) else (type(x), x)
        for x in flat
    )
    try:
        memo = (fn, treedef, sig)
        if memo not in _KEYS:
            _KEYS[memo] = _key(fn, args)
        return _KEYS[memo]
    except TypeError:  # something unhashable: key it every time
        return _key(fn, args)


def _skeleton(tree):
    return jax.tree.map(lambda x: _Slot(x) if eqx.is_array(x) else x, tree)


def _key(fn, args) -> str | None:
    try:
        what = pickle.dumps((_FORMAT, fn, _skeleton(args)), protocol=5)
    except Exception:  # e.g. a field holding a closure: not keyable, so never stored
        return None
    config = tuple(str(getattr(jax.config, name)) for name in _CONFIG)
    where = (_source_hash(), _versions(), jax.default_backend(), jax.devices()[0].device_kind,
             config)  # fmt: skip
    return hashlib.sha256(what + repr(where).encode()).hexdigest()


def _source_hash() -> str:
    if not _SOURCE:
        digest = hashlib.sha256()
        root = Path(__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        _SOURCE.append(digest.hexdigest())
    return _SOURCE[0]


def _versions() -> tuple:
    out = []
    for name in _PACKAGES:
        try:
            out.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            out.append((name, None))
    return tuple(out)


def _load(folder: Path, key: str) -> _Program | None:
    path = folder / f"{key}.bin"
    try:
        blob = path.read_bytes()
        skeleton_bytes, program_bytes = pickle.loads(blob)
        exported = jax.export.deserialize(bytearray(program_bytes))
        return _Program(exported, pickle.loads(skeleton_bytes))
    except Exception:  # absent, partial or from an incompatible install: trace instead
        return None


def _store(folder: Path, key: str, fn, args) -> _Program | None:
    """Export `fn` on `args`' shapes, write it under `key` and return it (None on failure)."""
    dyn, static = eqx.partition(args, eqx.is_array)
    treedef = jax.tree.structure(dyn)
    box = {}

    def flat(*leaves):
        out = fn(*eqx.combine(jax.tree.unflatten(treedef, leaves), static))
        box["skeleton"] = _skeleton(out)
        return [x for x in jax.tree.leaves(out) if eqx.is_array(x)]

    try:
        exported = jax.export.export(jax.jit(flat))(*jax.tree.leaves(dyn))
        skeleton = pickle.dumps(box["skeleton"], protocol=5)
        blob = pickle.dumps((skeleton, bytes(exported.serialize())), protocol=5)
    except Exception:  # JAX cannot export it (or flatbuffers is missing): plain jit
        return None
    _write_once(folder / f"{key}.bin", blob)
    return _Program(exported, box["skeleton"])


def _write_once(path: Path, blob: bytes) -> None:
    """Write `blob` to `path` atomically unless it exists (a hard link never replaces a file
    another process wrote first); failures are ignored: the file only saves time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        try:
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
    except OSError:
        return
