"""Execute notebooks/quickstart.ipynb headless, with small sizes, as a regression test.

The cell tagged `parameters` is replaced with small values, then every cell runs in a fresh
kernel; the notebook's own final cell asserts that the late-fusion time ratio matches the
closed form, so a silent regression fails here.

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

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"

SMALL_PARAMETERS = """\
WIDTH = 8
SEEDS = 2
INIT_SCALE = 1e-12
RHOS = [0.0, 0.5]
RATIO = 2.0
import sys as _sys
print("KERNEL_PYTHON=" + _sys.executable)
"""


def _stream_text(cell) -> str:
    outputs = cell.get("outputs", [])
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def test_quickstart_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_quickstart_notebook_runs(monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "the notebook must have exactly one cell tagged 'parameters'"
    tagged[0].source = SMALL_PARAMETERS
    # Inherited by the kernel process: a non-interactive backend, no GPU preallocation.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell (incl. the asserts)

    kernel_python = _stream_text(tagged[0]).split("KERNEL_PYTHON=")[1].split()[0]
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    assert "all checks passed" in _stream_text(nb.cells[-1])
