"""Sweeps: incremental CSV, interruption and resume, settings checks, chunk-independence, outputs.

All sweeps here use depth 2, L_f 2, width 8, random init and chunks of 4 members (the shapes
the CLI and figure tests use too), so the batched solver is compiled once per session.
"""

import csv
import json
import math

import pytest

from multimodal_dln.sweep import (
    CSV_COLUMNS,
    MemberConfig,
    read_results,
    row_key,
    run_sweep,
    simulate_toy,
    theory_time_ratio,
)

DEPTH, WIDTH, CHUNK, U0 = 2, 8, 4, 1e-12
GRID = {"fusion_layer": [2], "rho": [-0.5, 0.0, 0.5], "ratio": [2.0], "init_scale": [U0]}
COMMON = dict(depth=DEPTH, width=WIDTH, progress=False)


class _Stop(Exception):
    pass


def _same(a, b):
    """Row equality with NaN == NaN (bit-for-bit otherwise)."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        for k in a
    )


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_done")
    res = run_sweep(GRID, seeds=2, out_dir=out, chunk_size=CHUNK, **COMMON)
    return out, res


def test_finished_sweep_outputs(finished):
    out, res = finished
    rows = read_results(out)
    assert len(rows) == 6 == len(res.rows) == res.n_run
    assert list(_csv_rows(out / "results.csv")[0]) == list(CSV_COLUMNS)
    assert all(r["success"] for r in rows)
    for r in rows:
        assert r["theory_time_ratio"] == pytest.approx(
            theory_time_ratio(2, 2, r["rho"], r["ratio"])
        )
        assert abs(r["rel_error"]) < 0.1  # leading-order theory, width 8, u0 = 1e-12
        assert math.isnan(r["lr"])  # flow: no learning rate
    assert (out / "time_ratio.png").stat().st_size > 1000
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["settings"]["width"] == WIDTH and cfg["grid"]["rho"] == GRID["rho"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_members"] == 6 and summary["n_success"] == 6
    assert summary["by_ratio"][0]["median_abs_rel_error"] < 0.1


def test_interrupted_sweep_keeps_finished_chunks_and_resumes(tmp_path):
    on_disk = []

    def stop_after_first(rows):
        on_disk.append(len(_csv_rows(tmp_path / "results.csv")))  # written before the callback
        raise _Stop

    with pytest.raises(_Stop):
        run_sweep(
            GRID, seeds=2, out_dir=tmp_path, chunk_size=CHUNK, on_chunk=stop_after_first, **COMMON
        )
    assert on_disk == [CHUNK]
    first = read_results(tmp_path)
    assert len(first) == CHUNK

    # Resume with an extended grid (one more ratio): only missing members run, nothing twice.
    grid = dict(GRID, ratio=[2.0, 3.0])
    res = run_sweep(grid, seeds=2, out_dir=tmp_path, chunk_size=CHUNK, resume=True, **COMMON)
    assert res.n_skipped == CHUNK and res.n_run == 12 - CHUNK
    rows = read_results(tmp_path)
    keys = [row_key(r) for r in rows]
    assert len(keys) == len(set(keys)) == 12
    expected = {
        (2, rho, ratio, U0, s) for rho in GRID["rho"] for ratio in (2.0, 3.0) for s in (0, 1)
    }
    assert set(keys) == expected
    assert all(
        _same(a, b) for a, b in zip(rows[:CHUNK], first, strict=True)
    )  # earlier rows untouched

    # Resuming a complete sweep runs nothing.
    again = run_sweep(grid, seeds=2, out_dir=tmp_path, chunk_size=CHUNK, resume=True, **COMMON)
    assert again.n_run == 0 and len(read_results(tmp_path)) == 12


def test_resume_drops_truncated_line(tmp_path):
    res = run_sweep(
        dict(GRID, rho=[0.5]), seeds=1, out_dir=tmp_path, chunk_size=CHUNK, figure=False, **COMMON
    )
    path = tmp_path / "results.csv"
    with open(path, "a") as fh:
        fh.write("2,2,8,random,flow,nan,0.0,2.0")  # a crash mid-write
    assert len(read_results(path)) == 1
    with pytest.raises(ValueError, match="line 3"):
        read_results(path, strict=True)
    res = run_sweep(
        dict(GRID, rho=[0.5, 0.0]),
        seeds=1,
        out_dir=tmp_path,
        chunk_size=CHUNK,
        resume=True,
        figure=False,
        **COMMON,
    )
    assert res.n_run == 1
    assert len(read_results(path, strict=True)) == 2


@pytest.mark.parametrize(
    "change, word",
    [
        ({"width": 16}, "width"),
        ({"init": "entrywise"}, "init"),
        ({"method": "gd"}, "method"),
        ({"depth": 3}, "depth"),
    ],
)
def test_resume_with_different_settings_is_refused(finished, change, word):
    out, _ = finished
    kwargs = dict(COMMON, **change)
    with pytest.raises(ValueError, match=f"cannot resume.*{word}"):
        run_sweep(GRID, seeds=2, out_dir=out, chunk_size=CHUNK, resume=True, **kwargs)
    assert len(read_results(out)) == 6  # untouched


def test_existing_sweep_needs_resume(finished):
    out, _ = finished
    with pytest.raises(ValueError, match="resume"):
        run_sweep(GRID, seeds=2, out_dir=out, chunk_size=CHUNK, **COMMON)


def test_same_seed_same_result_whatever_the_chunking(finished, tmp_path):
    _, res4 = finished
    # chunk size 3, and a different grid order: members land at other positions and in other chunks
    grid = dict(GRID, rho=[0.5, 0.0, -0.5])
    res3 = run_sweep(grid, seeds=[1, 0], out_dir=tmp_path, chunk_size=3, figure=False, **COMMON)
    by_key = {row_key(r): r for r in res4.rows}
    assert len(res3.rows) == 6
    for r in res3.rows:
        assert _same(r, by_key[row_key(r)])  # bit for bit
    # and a single member solved on its own (padded to a chunk) agrees too
    one = simulate_toy([MemberConfig(2, 0.5, 2.0, U0, 1)], depth=DEPTH, width=WIDTH, pad_to=CHUNK)
    ref = by_key[(2, 0.5, 2.0, U0, 1)]
    assert _same({k: one.rows[0][k] for k in CSV_COLUMNS}, ref)


@pytest.mark.parametrize(
    "grid_change, kwargs, word",
    [
        ({"fusion_layer": [3]}, {}, "fusion_layer"),
        ({"fusion_layer": [0]}, {}, "fusion_layer"),
        ({"rho": [1.0]}, {}, "rho"),
        ({"rho": [-1.2]}, {}, "rho"),
        ({"ratio": [0.0]}, {}, "ratio"),
        ({"ratio": [-2.0]}, {}, "ratio"),
        ({"init_scale": [0.0]}, {}, "init_scale"),
        ({"rho": []}, {}, "rho"),
        ({}, {"seeds": 0}, "seeds"),
        ({}, {"width": 0}, "width"),
        ({}, {"depth": 0}, "depth"),
        ({}, {"init": "orthogonal"}, "init"),
        ({}, {"method": "adam"}, "method"),
        ({}, {"method": "gd", "lr": 0.0}, "lr"),
        ({}, {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_invalid_inputs_name_the_parameter(tmp_path, grid_change, kwargs, word):
    args = dict(COMMON, seeds=1, chunk_size=CHUNK)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        run_sweep(dict(GRID, **grid_change), out_dir=tmp_path, **args)
    assert not (tmp_path / "results.csv").exists()


def test_grid_keys_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        run_sweep(dict(GRID, beta=[1]), seeds=1, out_dir=tmp_path, **COMMON)
    with pytest.raises(ValueError, match="missing key.*init_scale"):
        run_sweep(
            {k: v for k, v in GRID.items() if k != "init_scale"},
            seeds=1,
            out_dir=tmp_path,
            **COMMON,
        )


def test_gd_sweep(tmp_path):
    res = run_sweep(
        GRID,
        seeds=1,
        out_dir=tmp_path,
        chunk_size=CHUNK,
        method="gd",
        lr=0.005,
        figure=False,
        **COMMON,
    )
    assert len(res.rows) == 3
    for r in res.rows:
        assert r["method"] == "gd" and r["lr"] == 0.005 and r["success"]
        assert abs(r["rel_error"]) < 0.1  # times in gradient-flow units (steps x lr)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["settings"]["lr"] == 0.005
    with pytest.raises(ValueError, match="cannot resume.*lr"):
        run_sweep(GRID, seeds=1, out_dir=tmp_path, method="gd", lr=0.01, resume=True, **COMMON)
