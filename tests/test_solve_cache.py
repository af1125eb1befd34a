"""The batched solve is cacheable: no host callback in its executable, so JAX's persistent
compilation cache serves a second process (`multimodal_dln._cache`, `_solve.checks_as_nan`)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp

import multimodal_dln as mdln
from multimodal_dln import _solve


def _batch():
    keys = jax.random.split(jax.random.key(0), 2)
    stats = jax.vmap(mdln.Statistics.toy)(jnp.array([0.0, 0.5]), jnp.array([2.0, 2.0]))
    nets = jax.vmap(
        lambda k: mdln.FusionDLN.init(
            k, depth=2, fusion_layer=2, width=4, d_A=1, d_B=1, init_scale=1e-6
        )
    )(keys)
    return nets, stats


def test_lowered_solve_has_no_host_callback(monkeypatch):
    texts = []
    orig = _solve._call_jit

    def spy(fn, *args):
        texts.append(jax.jit(lambda *a: fn(*a)).lower(*args).as_text())
        return orig(fn, *args)

    monkeypatch.setattr(_solve, "_call_jit", spy)
    traj = mdln.gradient_flow(*_batch())
    assert texts and all("callback" not in t for t in texts)
    assert (traj.status == mdln.Status.OK).all()


_SCRIPT = """
import jax, jax.numpy as jnp, multimodal_dln as mdln
keys = jax.random.split(jax.random.key(0), 2)
stats = jax.vmap(mdln.Statistics.toy)(jnp.array([0.0, 0.5]), jnp.array([2.0, 2.0]))
nets = jax.vmap(lambda k: mdln.FusionDLN.init(k, depth=2, fusion_layer=2, width=4, d_A=1,
                                              d_B=1, init_scale=1e-6))(keys)
print(float(mdln.measure(mdln.gradient_flow(nets, stats), stats).time_ratio[1]))
"""


def test_second_process_reuses_the_compiled_solve(tmp_path):
    """A fresh process fills the cache folder; a second one adds no entry (every compile is
    a cache hit) and gets the same result."""
    env = dict(os.environ, MDLN_COMPILATION_CACHE_DIR=str(tmp_path), MDLN_COMPILATION_CACHE="1")

    def run():
        out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        return out.stdout.strip()

    first = run()
    entries = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(entries) > 3  # the solve and the small eager programs
    second = run()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == entries
    assert first == second
