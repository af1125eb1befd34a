"""Stored programs (`multimodal_dln._exported`): a later process loads the lowered solve
instead of tracing it, and gets the same arrays bit for bit; the key separates what must
not share a program; whatever cannot be stored falls back to the ordinary jit call."""

import hashlib
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import compilations

import multimodal_dln as mdln
from multimodal_dln import _config, _exported, _gradient_flow, _solve

_SCRIPT = """
import hashlib, sys
import jax, jax.numpy as jnp, numpy as np, equinox as eqx
import multimodal_dln as mdln
from multimodal_dln import _exported
if sys.argv[1] == "load-only":  # a stored program must be found, never made again
    def _refuse(*args):
        raise AssertionError("a program was stored again instead of loaded")
    _exported._store = _refuse
stats = jax.vmap(mdln.Statistics.toy)(jnp.array([0.0, 0.5, -0.4]), jnp.array([2.0, 2.0, 1.5]))
nets = eqx.filter_vmap(lambda k: mdln.FusionDLN.init(k, depth=3, fusion_layer=2, width=4,
                                                     d_A=1, d_B=1, init_scale=1e-2)
                       )(jax.random.split(jax.random.key(0), 3))
traj = mdln.gradient_flow(nets, stats)
m = mdln.measure(traj, stats)
assert bool(jnp.all(m.success)), m.failure_reasons()
digest = hashlib.sha256()
for a in (traj.weights, traj.weights_dot, traj.loss, traj.t_end, traj.num_steps, m.time_ratio):
    digest.update(np.asarray(a).tobytes())
print(digest.hexdigest())
"""


def _run(cache, mode: str, stored: str = "1") -> str:
    env = dict(os.environ, MDLN_COMPILATION_CACHE_DIR=str(cache), MDLN_COMPILATION_CACHE="1",
               MDLN_STORED_PROGRAMS=stored)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_second_process_loads_the_stored_solve_and_gets_the_same_arrays(tmp_path):
    first = _run(tmp_path / "cache", "store")
    stored = sorted((tmp_path / "cache" / "mdln-exported").glob("*.bin"))
    assert len(stored) == 2, stored  # the start values and the solve
    assert _run(tmp_path / "cache", "load-only") == first
    assert _run(tmp_path / "plain", "store", stored="0") == first  # JAX's own path
    assert not (tmp_path / "plain" / "mdln-exported").exists()


def _mapped(activation="linear", n_save=64):
    net = mdln.FusionDLN.init(
        jax.random.key(0), depth=2, fusion_layer=1, width=4, d_A=1, d_B=1, activation=activation
    )
    _, static = eqx.partition(net, eqx.is_array)
    cfg = _config.solver_config(n_save, 1e-8, None, 1e-6, 200_000, None)
    return _solve.Mapped(_gradient_flow._Solve(static, cfg), (0,) * 8)


def test_key_separates_what_must_not_share_a_program():
    args = (jnp.zeros((3, 4)), jnp.ones(3))
    base = _exported._key(_mapped(), args)
    assert base == _exported._key(_mapped(), (jnp.ones((3, 4)), jnp.zeros(3)))  # values: same
    assert len({
        base,
        _exported._key(_mapped("relu"), args),  # a field repr does not show
        _exported._key(_mapped(n_save=128), args),
        _exported._key(_mapped(), (jnp.zeros((5, 4)), jnp.ones(5))),  # shapes
        _exported._key(_mapped(), (jnp.zeros((3, 4), jnp.float32), jnp.ones(3))),  # dtypes
        _exported._key(_mapped(), (jnp.zeros((3, 4)), 1.0)),  # a Python value instead
    }) == 6  # fmt: skip


def _sin(x):
    return jnp.sin(x)


class _Doubled(eqx.Module):
    """2 fn(x), marked as storable."""

    exportable = True
    fn: object = eqx.field(static=True)

    def __call__(self, x):
        return 2.0 * self.fn(x)


class _Unmarked(eqx.Module):
    fn: object = eqx.field(static=True)

    def __call__(self, x):
        return self.fn(x)


def test_what_cannot_be_stored_runs_the_plain_call(tmp_path, monkeypatch):
    monkeypatch.setattr(_exported, "stored_programs_dir", lambda: tmp_path / "mdln-exported")
    calls = []

    def plain(fn, *args):
        calls.append(fn)
        return fn(*args)

    x = jnp.arange(3.0)
    closure = _Doubled(lambda v: v + x)  # a closure does not pickle: no key
    np.testing.assert_array_equal(_exported.call_exported(closure, (x,), plain), 2 * (x + x))
    assert calls == [closure]
    plain_fn = _Unmarked(_sin)  # not marked exportable: never stored
    _exported.call_exported(plain_fn, (x,), plain)
    assert calls[-1] is plain_fn and not (tmp_path / "mdln-exported").exists()


def test_unwritable_folder_still_solves(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(_exported, "stored_programs_dir", lambda: blocked / "mdln-exported")
    monkeypatch.setattr(_exported, "_MEMORY", {})
    x = jnp.arange(4.0)
    out = _exported.call_exported(_Doubled(_sin), (x,), lambda fn, *a: pytest.fail("plain"))
    np.testing.assert_array_equal(out, 2.0 * jnp.sin(x))  # exported in memory, not written
    assert hashlib.sha256(blocked.read_bytes()).hexdigest() == hashlib.sha256(
        b"not a folder"
    ).hexdigest()


def test_remembered_keys_separate_values_of_other_types():
    fn = _mapped()
    for v in (1, 1.0, True):
        args = (jnp.zeros(3), v)
        flat, treedef = jax.tree.flatten(args)
        assert _exported._memo_key(fn, args, flat, treedef) == _exported._key(fn, args)
    keys = {_exported._memo_key(fn, (jnp.zeros(3), v), *jax.tree.flatten((jnp.zeros(3), v)))
            for v in (1, 1.0, True)}  # fmt: skip
    assert len(keys) == 3


class _Sum(eqx.Module):
    """x + y, marked as storable."""

    exportable = True

    def __call__(self, x, y):
        return x + y


def test_a_stored_program_compiles_once_whatever_the_inputs_placement(tmp_path, monkeypatch):
    """Committed inputs (outputs of an earlier program, `device_put`) and uncommitted ones (made
    eagerly), in any mix, run the one compiled program: the placements used to be part of the
    lowering, and a second `gradient_flow` call on the same batch compiled its solve again."""
    monkeypatch.setattr(_exported, "stored_programs_dir", lambda: tmp_path / "mdln-exported")
    x, y = jnp.arange(5.0), jnp.ones(5)
    assert not x.committed and not y.committed
    placed = jax.device_put(x, jax.devices()[0])
    fn = _Sum()
    first = _exported.call_exported(fn, (x, y), lambda f, *a: f(*a))
    with compilations("jit(call)") as again:  # the stored program
        for args in [(placed, y), (y, placed), (placed, placed), (x, y)]:
            out = _exported.call_exported(fn, args, lambda f, *a: f(*a))
            np.testing.assert_array_equal(out, np.asarray(args[0]) + np.asarray(args[1]))
    np.testing.assert_array_equal(first, np.arange(5.0) + 1.0)
    assert again == [], f"{len(again)} more compilations of the stored program"
