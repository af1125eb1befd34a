"""Smoke tests of `benchmarks/`: the machinery runs at tiny sizes and writes valid JSON.

Not timed tests: they assert structure only, never speed (the numbers of a tiny run mean
nothing). The fast test runs the flagship `sweep` benchmark through the command line; the
other benchmarks run one per test under the `slow` marker (compile-bound, ~10-30 s each).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import (
    BENCHMARKS,
    __main__ as cli,
    _common as C,
    baselines as bl,
    buckets as bk,
    gpu,
    sweep,
)

ROW_KEYS = {"metric", "value", "unit", "goal", "met", "note"}


def _strict_load(path):
    def bad(const):
        raise ValueError(f"non-finite number {const} in {path}")

    return json.loads(path.read_text(), parse_constant=bad)


def _check_record(rec: dict, name: str, mode: str = "tiny"):
    assert rec["name"] == name
    assert rec["mode"] == mode
    assert rec["error"] is None, rec["error"]
    assert isinstance(rec["wall_s"], float) and rec["wall_s"] >= 0
    env = rec["environment"]
    for key in ("date", "platform", "cpu_count", "device_kind", "backend", "versions", "loadavg"):
        assert key in env
    assert {"jax", "diffrax", "equinox"} <= set(env["versions"])
    assert "loadavg_start" in rec and "loadavg_end" in rec
    assert rec["rows"], "a benchmark must report at least one table row"
    for row in rec["rows"]:
        assert set(row) == ROW_KEYS
        assert isinstance(row["metric"], str) and row["metric"]
        value = row["value"]
        assert value is None or (isinstance(value, (int, float)) and math.isfinite(value))
        assert row["met"] in (True, False, None)
    assert isinstance(rec["details"], dict) and rec["details"]


def test_sweep_tiny_through_cli(tmp_path, capsys):
    code = cli.main(["--tiny", "--only", "sweep", "--out", str(tmp_path)])
    assert code == 0
    rec = _strict_load(tmp_path / "sweep.json")
    _check_record(rec, "sweep")
    d = rec["details"]
    assert d["baseline"]["mode"] in ("full grid", "subset + extrapolation")
    assert d["n_members"] == 4
    assert len(d["batched"]["time_ratio"]) == 4
    assert all(c["epochs"] >= 1 for c in d["baseline"]["configs"])
    out = capsys.readouterr().out
    assert "benchmark" in out and "sweep" in out  # the table was printed


_NOT_TINY = ("sweep", "process", "compile", "lf_sweep", "baselines")  # sweep: via the CLI above
# `process`, `compile` and `lf_sweep` time fresh processes (subprocesses compiling from scratch,
# about a minute each even when tiny); the cache they measure: tests/test_solve_cache.py.
# `baselines` compiles two solves per solver even when tiny (87-109 s here under load): left out
# while the suite is over its time budget; its plotting and interpolation are tested below.


@pytest.mark.slow
@pytest.mark.parametrize("name", [b for b in BENCHMARKS if b not in _NOT_TINY])
def test_benchmark_tiny(name, tmp_path):
    rec = cli.run_one(name, "tiny", tmp_path)
    _check_record(rec, name)
    _check_record(_strict_load(tmp_path / f"{name}.json"), name)
    if name == "gpu" and rec["environment"]["backend"] != "gpu":
        bw = [r for r in rec["rows"] if "bandwidth" in r["metric"]]
        assert bw and bw[0]["value"] is None and bw[0]["note"] == "not measured (no GPU)"


def test_unknown_benchmark_is_rejected(capsys):
    assert cli.main(["--tiny", "--only", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown benchmark 'nope'; choose from sweep" in err, err


# ---- helpers (pure functions) ------------------------------------------------------------------
def test_useful_fraction_matches_bucket_grouping():
    steps = np.array([10, 100, 10, 100])
    assert bk.useful_fraction(steps, steps.astype(float), 1) == pytest.approx(220 / 400)
    two = bk.useful_fraction(steps, steps.astype(float), 2)
    assert two == pytest.approx(220 / (2 * 10 + 2 * 100))
    # uneven split: the padded last bucket counts as waste
    assert bk.useful_fraction(np.array([1, 1, 1]), np.zeros(3), 2) == pytest.approx(3 / 4)


def test_sweep_subset_and_authors_rule():
    idx = sweep.subset(180, 20, 5)
    assert idx[0] == 0 and len(idx) == 9 and len(set(idx % 5)) == 5
    assert len(sweep.subset(180, 30, 5)) == 6
    assert np.array_equal(sweep.subset(7, 1, 5), np.arange(7))
    hist = np.stack([np.linspace(0, 1.25, 11), np.linspace(0, 1.0, 11)], axis=1)  # rho/r = 0.25
    t_A, t_B = sweep.authors_times(hist, 0.5, 2.0)
    assert t_A == pytest.approx(5 * sweep.LR) and t_B == pytest.approx(5 * sweep.LR)


def test_table_json_and_peaks():
    rows = [
        C.row("a ratio", 12.345, goal=">= 1", met=True),
        C.row("a fraction", 0.5, unit="%"),
        C.row("missing", float("nan")),
    ]
    table = C.format_table([{"name": "x", "rows": rows}])
    assert "12.3 x" in table and "50.0 %" in table and "n/a" in table
    assert "| x | a ratio |" in C.markdown_table([{"name": "x", "rows": rows}])
    raw = {"a": np.float64("nan"), "b": np.arange(2), "c": (np.bool_(True),)}
    assert C.jsonable(raw) == {"a": None, "b": [0, 1], "c": [True]}
    assert gpu.peak_bandwidth("NVIDIA H100 80GB HBM3") == ("H100", 3.35e12)
    assert gpu.peak_bandwidth("NVIDIA H200") == ("H200", 4.8e12)
    assert gpu.peak_bandwidth("cpu") == (None, None)


def test_compile_log_counts_compilations():
    import jax
    import jax.numpy as jnp

    f = jax.jit(lambda x: x * 3 + 1)
    x, y = jnp.ones(5), jnp.zeros(5)
    with C.CompileLog() as log:
        f(x)
    with C.CompileLog() as again:
        f(y)  # same shapes and dtype: no compilation
    assert log.count >= 1 and again.count == 0


def test_results_are_never_written_over(tmp_path, capsys):
    """A quick run cannot replace the committed full-run files, and no run writes into a
    folder that already holds results of the benchmarks it runs (refused before any runs)."""
    assert cli.main(["--quick", "--update-results"]) == 2
    assert "full runs only" in capsys.readouterr().err
    (tmp_path / "dtype.json").write_text("{}")
    assert cli.main(["--tiny", "--only", "dtype", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "dtype.json" in err and "choose a new folder" in err, err
    assert (tmp_path / "dtype.json").read_text() == "{}"


def test_baselines_wall_at_error_and_plot(tmp_path):
    """The work-precision summary (log-log interpolation of wall time at a target error) and
    the figure, drawn from a record shaped like `baselines.json` (no solve: fast)."""
    pts = [
        {"rtol": 1e-4, "max_err": 1e-4, "wall_s": 1.0},
        {"rtol": 1e-6, "max_err": 1e-6, "wall_s": 4.0},
        {"rtol": 1e-8, "max_err": 1e-8, "wall_s": 16.0},
    ]
    got = bl.wall_at_error(pts, 1e-5)  # halfway in log error -> geometric mean of 1 and 4
    assert got["how"] == "interpolated" and got["wall_s"] == pytest.approx(2.0)
    assert bl.wall_at_error(pts, 1e-3) == {"wall_s": 1.0, "how": "upper bound"}
    assert bl.wall_at_error(pts, 1e-9) == {"wall_s": None, "how": "not reached"}
    problem = {"depth": 2, "fusion_layer": 2, "width": 8, "init": "entrywise", "init_scale": 1e-9}
    record = {
        "details": {
            "work_precision": {
                name: {
                    "problem": problem,
                    "reference": {"ratios": [4.0, 5.0]},
                    "solvers": {"Tsit5": {"points": pts}, "Kvaerno5": {"points": pts[:1]}},
                }
                for name in ("toy", "deep")
            }
        }
    }
    png = bl.plot(record, tmp_path / "wp.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
