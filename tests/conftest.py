"""Test configuration, set before JAX starts:

- single-threaded BLAS (multi-threaded OpenBLAS made small LU factorizations 220x slower here);
- float64 (enabled by importing multimodal_dln) and strict dtype promotion;
- headless matplotlib;
- jaxtyping's import hook with beartype on the package (type and shape annotations checked in
  every test but those marked `wrong_types`);
- compiled programs dropped from memory between tests once a worker holds half the memory
  mappings Linux allows a process (`multimodal_dln.release_compiled_if_crowded`: a worker
  compiles thousands of programs, and past the cap XLA dies with a segmentation fault);
- one persistent compilation cache per test run (a fresh temporary folder, shared by the
  xdist workers: a solve that several tests compile with the same shapes is compiled once;
  `multimodal_dln._cache`), since the suite is dominated by XLA compilation on a 2-core CPU.

XLA:CPU code generation: the suite is compile-bound (a toy solve's program compiles in
seconds and runs in milliseconds), so the tests and the processes they start compile with
XLA:CPU's legacy emitters (`--xla_cpu_use_fusion_emitters=false`, `FAST_CODEGEN`), which
compile faster and generate slower code: measured on four test files, 218 s against 302 s
wall on 2 workers (user time 400 s against 550 s). The quickstart and sweeps notebooks, which
run the main workflows end to end and assert their claims, run in kernels with XLA's default
code generation, as users run it (`default_codegen_flags`, tests/test_notebook.py); the
benchmarks measure it too. `MDLN_TEST_CODEGEN=default` runs the whole suite with the default.
The flag is added only when this jaxlib accepts it (a probe process; XLA aborts on an unknown
flag). (Other cheaper codegen flags, --xla_backend_optimization_level=0 and
--xla_llvm_disable_expensive_passes, were present in both segmentation faults seen in XLA
compilation under xdist, and with jax 0.11.2 they made a sharded solve fail diffrax's
save-time check.)
"""

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

FAST_CODEGEN = "--xla_cpu_use_fusion_emitters=false"


def default_codegen_flags() -> str:
    """XLA_FLAGS without `FAST_CODEGEN`: what a process running as users do gets."""
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if f != FAST_CODEGEN)


def _accepts(flag: str) -> bool:
    """Whether a JAX process starts with `flag` in XLA_FLAGS (XLA aborts on unknown flags)."""
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip())
    probe = "import jax; jax.devices('cpu')"
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True)
    return proc.returncode == 0


# Set once in the controller, inherited by the xdist workers (their XLA_FLAGS already hold it).
_flags = os.environ.get("XLA_FLAGS", "").split()
if os.environ.get("MDLN_TEST_CODEGEN", "fast") == "fast" and FAST_CODEGEN not in _flags:
    if _accepts(FAST_CODEGEN):
        os.environ["XLA_FLAGS"] = " ".join(_flags + [FAST_CODEGEN])

if "MDLN_COMPILATION_CACHE_DIR" not in os.environ:  # set once, inherited by the xdist workers
    os.environ["MDLN_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="mdln-test-cache-")

import jax  # noqa: E402
import jaxtyping  # noqa: E402
import pytest  # noqa: E402

# Every test runs under jaxtyping's import hook with beartype (as diffrax and equinox test
# themselves): each annotated function and module of the package checks its arguments' types
# and array shapes when called (inside jit: when traced). MDLN_TYPECHECK=0 turns it off.
# The hook stays installed for the session, so modules imported later (experiments, cli)
# are checked too.
if os.environ.get("MDLN_TYPECHECK", "1") != "0":
    _checker = "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))"
    jaxtyping.install_import_hook("multimodal_dln", _checker)

import multimodal_dln  # noqa: E402, F401  (enables float64)

# No implicit dtype promotion inside the package (as the JAX stack's test suites do): a float32
# operand meeting a float64 one, or an integer array meeting a float array, is an error.
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests that share a module-scoped fixture (a solve several tests check) run on one xdist
    worker (`--dist loadgroup`, pyproject.toml), so the fixture is computed once, not once per
    worker; every other test is distributed freely."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        defs = fixtures.name2fixturedefs.values() if fixtures else ()
        if any(d and d[-1].scope == "module" for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.hookimpl(trylast=True)  # after xdist's hook
def pytest_collection_finish(session):
    """Fail loudly if xdist did not tag the grouped tests (pytest 9.2 with xdist 3.8 does not:
    pyproject.toml pins pytest below it): ungrouped, every module fixture is computed on
    both workers and the suite silently takes minutes longer."""
    if not getattr(session.config.option, "loadgroup", False):  # set on xdist workers
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group")]
    lost = [n for n in lost if "@" not in n]
    if lost:
        raise pytest.UsageError(f"xdist did not group {len(lost)} tests, e.g. {lost[0]}")


def pytest_runtest_teardown(item, nextitem):
    multimodal_dln.release_compiled_if_crowded()


@pytest.fixture(autouse=True)
def _wrong_types(request):
    """Tests marked `wrong_types` pass wrongly typed values on purpose, to check the package's
    own one-line errors (what a user without a type checker sees): type checking is off for
    them (jaxtyping checks the switch at every call)."""
    if request.node.get_closest_marker("wrong_types") is None:
        yield
        return
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


@pytest.fixture
def key():
    return jax.random.key(0)
