"""Test configuration, set before JAX starts:

- single-threaded BLAS (a 220x LU slowdown otherwise on small matrices, stack notes 1.2);
- float64 (enabled by importing multimodal_dln);
- headless matplotlib;
- compile-time savings, since the suite is dominated by XLA compilation on a 2-core CPU:
  cheaper XLA CPU code generation (~20 % less CPU time measured; numerics keep the same
  semantics, the tests compare with tolerances). No persistent compilation cache: since the
  solvers carry no `eqx.error_if` host callback any more their executables enter the cache,
  and full-suite runs then stalled twice with the CPU idle inside a cached solve that computes
  eigendecompositions (suspected: reloaded executables with LAPACK custom calls; issue 11
  re-enables the cache after investigating).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
_fast = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _fast).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

import multimodal_dln  # noqa: E402, F401  (enables float64)


@pytest.fixture
def key():
    return jax.random.key(0)
