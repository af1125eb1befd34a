"""The batched solve is cacheable: no host callback in its executable, so JAX's persistent
compilation cache serves a second process (`multimodal_dln._cache`, `_solve.checks_as_nan`).

Both tests read one fresh process (a module fixture), which fills an empty cache folder and
keeps the lowered text of every solve it runs; a second process then runs the same script.
(Lowering the solve in the test process as well would compile it a third time.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import multimodal_dln as mdln

_SCRIPT = """
import sys
from pathlib import Path
import jax, jax.numpy as jnp, multimodal_dln as mdln
from multimodal_dln import _solve
keep = Path(sys.argv[1]) if len(sys.argv) > 1 else None
if keep is not None:  # also keep the lowered text of every solve (lowering compiles nothing)
    texts, _orig = [], _solve._call_jit

    def _spy(fn, *args):
        texts.append(jax.jit(lambda *a: fn(*a)).lower(*args).as_text())
        return _orig(fn, *args)

    _solve._call_jit = _spy
keys = jax.random.split(jax.random.key(0), 2)
stats = jax.vmap(mdln.Statistics.toy)(jnp.array([0.0, 0.5]), jnp.array([2.0, 2.0]))
nets = jax.vmap(lambda k: mdln.FusionDLN.init(k, depth=2, fusion_layer=2, width=4, d_A=1,
                                              d_B=1, init_scale=1e-6))(keys)
traj = mdln.gradient_flow(nets, stats)
print(float(mdln.measure(traj, stats).time_ratio[1]))
if keep is not None:
    for i, text in enumerate(texts):
        (keep / f"lowered{i}.txt").write_text(text)
    (keep / "status.txt").write_text(" ".join(str(int(s)) for s in traj.status))
"""


def _run(cache: Path, *args: str) -> str:
    # stored programs off: the spy reads the solve's own lowering (tests/test_stored_programs.py
    # checks the stored path)
    env = dict(os.environ, MDLN_COMPILATION_CACHE_DIR=str(cache), MDLN_COMPILATION_CACHE="1",
               MDLN_STORED_PROGRAMS="0")
    out = subprocess.run([sys.executable, "-c", _SCRIPT, *args], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout.strip()


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def first_process(tmp_path_factory):
    """A fresh process on an empty cache folder: (cache folder, its files after the run,
    printed time ratio, folder holding the lowered solves and the statuses)."""
    cache, keep = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("lowered")
    printed = _run(cache, str(keep))
    return cache, _entries(cache), printed, keep


def test_lowered_solve_has_no_host_callback(first_process):
    *_, keep = first_process
    texts = [p.read_text() for p in sorted(keep.glob("lowered*.txt"))]
    assert texts and all("callback" not in t for t in texts)
    status = [int(s) for s in (keep / "status.txt").read_text().split()]
    assert status == [mdln.Status.OK] * 2


def test_second_process_reuses_the_compiled_solve(first_process):
    """A fresh process fills the cache folder; a second one adds no entry (every compile is
    a cache hit) and gets the same result."""
    cache, entries, first, _ = first_process
    assert len(entries) > 3  # the solve and the small eager programs
    second = _run(cache)
    assert _entries(cache) == entries
    assert first == second
