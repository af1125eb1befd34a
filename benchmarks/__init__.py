"""Benchmarks of the multimodal-dln engine: `python -m benchmarks [--quick] [--only NAME]`.

Each benchmark is a module with `NAME`, `DESCRIPTION` and `run(mode) -> dict`, where `mode` is
"full", "quick" or "tiny" (tiny: the smoke test's sizes, seconds, numbers meaningless). A run
returns a JSON-serializable dict whose "rows" are the headline ratios printed in the table;
absolute times are kept alongside in "details". `benchmarks.__main__` adds the environment
(platform, versions, device, CPU count, load average at start and end, date) and writes
`benchmarks/results/<name>.json`.

Timing rules (the measurement machine is shared, load average 3-5 at times): every timed
quantity is the median of several repetitions, wall time (`time.perf_counter`) and process
CPU time (`time.process_time`, all threads) are both recorded, compile time is excluded from
steady-state numbers and reported separately, and every headline number is a ratio of two
quantities measured in the same run.
"""

from __future__ import annotations

import os as _os

# Before JAX starts: single-threaded BLAS (multi-threaded BLAS measured 220x slower on the
# small LU factorizations of the implicit solvers). Set only if the user did not choose.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
_os.environ.setdefault("OMP_NUM_THREADS", "1")

BENCHMARKS = (
    "sweep",
    "process",
    "compile",
    "lf_sweep",
    "overhead",
    "scaling",
    "buckets",
    "dtype",
    "row_order",
    "gpu",
    "baselines",
)
"""Benchmark names in run order; each is the module `benchmarks.<name>`."""

MODES = ("full", "quick", "tiny")


def load(name: str):
    """The module of benchmark `name`."""
    import importlib

    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}.")
    return importlib.import_module(f"benchmarks.{name}")
