"""Setups shared by the experiment, CLI and figure tests (tests/test_sweep.py, test_cli.py,
test_figures.py).

Every toy simulation in those tests uses depth 2, L_f 2, width 8, random init, u0 = 1e-12 and
batches (chunks) of 4 members, so the batched solver compiles once per session.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math

import jax
import numpy as np

from multimodal_dln import theory
from multimodal_dln.cli import main
from multimodal_dln.sweeps import PHASE_COLUMNS

DEPTH, WIDTH, CHUNK, U0 = 2, 8, 4, 1e-12
GRID = {"fusion_layer": [2], "rho": [-0.5, 0.0, 0.5], "ratio": [2.0], "init_scale": [U0]}
"""Three correlations at ratio 2, late fusion: a small toy sweep."""
SWEEP_KW = dict(depth=DEPTH, width=WIDTH, progress=False)
"""The settings every test sweep shares (pass seeds, out_dir, chunk_size as needed)."""
CLI_BASE = ["--depth", "2", "--width", "8", "--init-scale", "1e-12", "--seeds", "4"]
"""`mdln simulate` options giving the same shapes (4 seeds = one chunk)."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@contextlib.contextmanager
def _durations(event_suffix: str, fun_name: str):
    """The durations of every `jax.monitoring` event ending in `event_suffix`, inside the
    block, for a jitted function whose name contains `fun_name`."""
    seen = []

    def listen(event, duration, **kw):
        if event.endswith(event_suffix) and fun_name in (kw.get("fun_name") or ""):
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def lowerings(fun_name: str):
    """The durations of every lowering to MLIR, inside the block, of a jitted function whose
    name contains `fun_name` (a new trace: the persistent compilation cache does not hide it)."""
    return _durations("jaxpr_to_mlir_module_duration", fun_name)


def compilations(fun_name: str):
    """The durations of every XLA compilation, inside the block, of a jitted function whose
    name contains `fun_name`."""
    return _durations("backend_compile_duration", fun_name)


def same_row(a, b) -> bool:
    """Row equality with NaN == NaN (bit for bit otherwise)."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        for k in a
    )


def csv_dicts(path) -> list[dict]:
    """The raw rows of a CSV file (strings, as written)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def is_png(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == PNG_MAGIC


def pyplot_figures() -> int:
    """How many figures pyplot holds (figures must leave none behind)."""
    import matplotlib.pyplot as plt

    return len(plt.get_fignums())


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`mdln ARGV` in-process: (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _no_nan(token):
    raise AssertionError(f"non-standard JSON constant {token}")


def simulate_json(capsys, *extra, err: list | None = None) -> dict:
    """`mdln simulate CLI_BASE EXTRA --json`: exit status 0, exactly one strict JSON object on
    stdout (no NaN / Infinity constants), parsed; stderr is appended to `err` if given."""
    rc, out, stderr = run_cli(capsys, "simulate", *CLI_BASE, *extra, "--json")
    assert rc == 0, stderr
    assert len(out.strip().splitlines()) == 1, "stdout must hold exactly one JSON object"
    if err is not None:
        err.append(stderr)
    return json.loads(out, parse_constant=_no_nan)


def toy_rows(
    depth=2, fusion_layers=(2,), rhos=(-0.5, 0.0, 0.5), ratios=(1.5, 2.0), u0s=(1e-12,), seeds=2
) -> list[dict]:
    """Hand-made sweep rows (results.csv columns) near the theory, with the member
    (seed 1, rho 0) failed wherever rho = 0 is on the grid."""
    rng = np.random.default_rng(0)
    rows = []
    for lf in fusion_layers:
        for rho in rhos:
            for ratio in ratios:
                for u0 in u0s:
                    for seed in range(seeds):
                        rows.append(_toy_row(depth, lf, rho, ratio, u0, seed, rng))
    return rows


def _toy_row(depth, lf, rho, ratio, u0, seed, rng) -> dict:
    th = theory.time_ratio_toy_network(depth, lf, rho, ratio)
    tr = (th if np.isfinite(th) else 1.5) * (1 + 0.02 * rng.standard_normal())
    ok = seed != 1 or rho != 0.0
    row = {
        "fusion_layer": lf,
        "depth": depth,
        "width": 8,
        "init": "random",
        "method": "flow",
        "lr": float("nan"),
        "rho": rho,
        "ratio": ratio,
        "init_scale": u0,
        "seed": seed,
        "t_A": 5.0,
        "t_B": 5.0 * tr,
        "time_ratio": tr,
        "misattribution": rho / ratio + 0.001,
        "plateau_loss": 0.1,
        "final_loss": 1e-6,
        "success": ok,
        "status": "OK" if ok else "NOT_CONVERGED",
        "reason": "ok" if ok else "did not converge by the horizon",
        "t_end": 100.0,
        "num_steps": 500,
        "theory_time_ratio": th,
        "rel_error": tr / th - 1,
    }
    if not ok:  # a failed member has no phase values
        row.update(dict.fromkeys(PHASE_COLUMNS, math.nan))
    return row
