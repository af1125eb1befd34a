"""The notebooks in notebooks/: each runs headless with small sizes, and each is stored executed.

`test_notebook_runs` executes every notebook in a fresh kernel with its cell tagged
`parameters` replaced by the small sizes in `SMALL` (a notebook without an entry there fails:
add one). Each notebook's last cell asserts its main quantitative claim and prints "all checks
passed", so a silent regression fails here.

`test_notebook_stored_executed` checks the stored files, which readers see on GitHub and on
the docs site without running anything: valid nbformat, every code cell executed in one
top-to-bottom run (execution counts 1, 2, 3, ...), no error output, at least one figure, the
final "all checks passed", and under the size limit.

Kernel resolution: `kernel_name="python3"` is ipykernel's native kernelspec, which
`pip install -e .[test]` installs into the environment (`<sys.prefix>/share/jupyter/kernels/
python3`, found by jupyter_client since `sys.prefix` is on the Jupyter data path). Its argv
starts with plain "python", which jupyter_client replaces with `sys.executable`, so the kernel
runs with the interpreter running pytest (the venv's) and no global kernelspec is needed. The
test checks this by having the kernel print its `sys.executable`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import FAST_CODEGEN, default_codegen_flags

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
MAX_STORED_BYTES = 1_500_000
# The main workflows (one run, a sweep) run with XLA's default code generation, as users run
# them; the others, like every in-process test, with the suite's cheaper codegen (conftest.py).
DEFAULT_CODEGEN = {"quickstart", "sweeps"}

# Small sizes per notebook (the source of its `parameters` cell during the test). Every name of
# the notebook's own parameters cell must be set here (checked below).
SMALL = {
    "beyond": """\
WIDTH = 32
LAMBDA_FRACS = [0.0, 0.5, 0.9, 1.25]
DELTAS = [1e-6, 1e-3, 10.0]
DELTAS_B = [1e-6, 1e-4]
N_SAMPLES = 64
SEEDS = 8
BATCH_SIZES = [1]
MODALITY_CONFIGS = 4
""",
    "deep_fusion": """\
DEPTH = 4
FUSION_LAYERS = [2]
WIDTH = 8
SEEDS = 2
INIT_SCALE = 0.1
RHOS = [0.0, 0.5]
RATIO = 2.0
""",
    "greedy": """\
RATIO = 2.0
RHOS = [0.5, 0.0]
WIDTH = 16
INIT_SCALE = 1e-9
LR = 0.04
ALPHA = 0.01
QS = [1, 5]
N_STEPS = 1200
""",
    "quickstart": """\
WIDTH = 8
SEEDS = 2
INIT_SCALE = 1e-12
RHOS = [0.0, 0.5]
RATIO = 2.0
""",
    "sweeps": """\
WIDTH = 8
SEEDS = 2
RHOS = [0.0, 0.5]
RATIOS = [2.0, 3.0]
""",
}
KERNEL_CHECK = (
    'import os as _os, sys as _sys\nprint("KERNEL_PYTHON=" + _sys.executable)\n'
    'print("KERNEL_XLA_FLAGS=" + repr(_os.environ.get("XLA_FLAGS", "")))\n'
)


def _stream_text(cell) -> str:
    outputs = cell.get("outputs", [])
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def _parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "a notebook must have exactly one cell tagged 'parameters'"
    return tagged[0]


def _assigned_names(source: str) -> set[str]:
    return {line.split("=")[0].strip() for line in source.splitlines() if "=" in line}


def test_every_notebook_has_small_parameters():
    assert NOTEBOOKS, "no notebooks found"
    assert {p.stem for p in NOTEBOOKS} == set(SMALL), "SMALL must list exactly the notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    params = _parameters_cell(nb)
    small = SMALL[path.stem]
    assert _assigned_names(small) == _assigned_names(params.source), (
        "the small parameters must set exactly the notebook's parameters"
    )
    params.source = small + KERNEL_CHECK
    # Inherited by the kernel process: a non-interactive backend, no GPU preallocation, and
    # for the main workflows XLA's default code generation, as users run it (conftest.py).
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if path.stem in DEFAULT_CODEGEN:
        monkeypatch.setenv("XLA_FLAGS", default_codegen_flags())
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell (incl. the asserts)

    kernel_python = _stream_text(params).split("KERNEL_PYTHON=")[1].split()[0]
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    kernel_flags = _stream_text(params).split("KERNEL_XLA_FLAGS=")[1].splitlines()[0]
    assert path.stem not in DEFAULT_CODEGEN or FAST_CODEGEN not in kernel_flags, kernel_flags
    assert "all checks passed" in _stream_text(nb.cells[-1])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stored_executed(path):
    assert path.stat().st_size < MAX_STORED_BYTES, f"{path.name}: {path.stat().st_size} bytes"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        "store the notebook executed top to bottom in one fresh kernel"
    )
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure stored"
    assert "all checks passed" in _stream_text(code[-1])
