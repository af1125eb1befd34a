"""Test configuration: single-threaded BLAS (a 220x LU slowdown otherwise on small matrices,
stack notes 1.2), float64 (enabled by importing multimodal_dln), headless matplotlib."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

import multimodal_dln  # noqa: E402, F401  (enables float64)


@pytest.fixture
def key():
    return jax.random.key(0)
