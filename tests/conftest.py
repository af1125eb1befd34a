"""Test configuration, set before JAX starts:

- single-threaded BLAS (multi-threaded OpenBLAS made small LU factorizations 220x slower here);
- float64 (enabled by importing multimodal_dln) and strict dtype promotion;
- headless matplotlib;
- compile-time savings, since the suite is dominated by XLA compilation on a 2-core CPU:
  cheaper XLA CPU code generation (~20 % less CPU time measured; numerics keep the same
  semantics, the tests compare with tolerances), and one persistent compilation cache per
  test run (a fresh temporary folder, shared by the xdist workers: a solve that several tests
  compile with the same shapes is compiled once; `multimodal_dln._cache`).
"""

import os
import tempfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
_fast = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _fast).strip()

if "MDLN_COMPILATION_CACHE_DIR" not in os.environ:  # set once, inherited by the xdist workers
    os.environ["MDLN_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="mdln-test-cache-")

import jax  # noqa: E402
import pytest  # noqa: E402

import multimodal_dln  # noqa: E402, F401  (enables float64)

# No implicit dtype promotion inside the package (as the JAX stack's test suites do): a float32
# operand meeting a float64 one, or an integer array meeting a float array, is an error.
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)
